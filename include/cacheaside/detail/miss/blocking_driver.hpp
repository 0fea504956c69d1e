// The blocking driver of the read machines (internal): does what they ask in
// the caller's thread, against the lookup protocol, the loaders and the clock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../error.hpp"
#include "../../protocol.hpp"
#include "../reporter.hpp"
#include "context.hpp"
#include "lead_fsm.hpp"
#include "load_result.hpp"
#include "miss.hpp"
#include "protocol_step.hpp"
#include "read_fsm.hpp"

namespace cacheaside::detail {

template <class Key, class Value, class Serializer>
class BlockingDriver {
 public:
  using Loader = std::function<std::optional<Value>(const Key&)>;
  using BulkLoader = std::function<std::vector<std::optional<Value>>(const std::vector<Key>&)>;
  using Ctx = ReadContext<Key, Value, Serializer>;
  using Read = ReadFsm<Key, Value, Serializer>;
  using Lead = LeadFsm<Key, Value, Serializer>;
  using M = Miss<Key, Value>;
  using Act = Action<M>;

  BlockingDriver(LookupProtocol& protocol, Loader loader, BulkLoader bulk, Clock& clock,
                 const Reporter& report)
      : protocol_(protocol),
        loader_(std::move(loader)),
        bulk_loader_(std::move(bulk)),
        clock_(clock),
        report_(report) {
    if (!loader_) throw Error("cacheaside: loader is empty");
  }

  BlockingDriver(const BlockingDriver&) = delete;
  BlockingDriver& operator=(const BlockingDriver&) = delete;

  /// Waits for leads still running in the background (loader timeouts).
  ~BlockingDriver() {
    std::unique_lock<std::mutex> lock(bg_mu_);
    bg_cv_.wait(lock, [&] { return bg_count_ == 0; });
  }

  void set_bulk_loader(BulkLoader bulk) { bulk_loader_ = std::move(bulk); }

  /// Runs a read to its end; rethrows what it ended with (a loader's exception,
  /// a hard timeout).
  void run(Read& fsm) {
    for (;;) {
      Act a = fsm.resume(clock_.now());
      if (a.step == Step::done) {
        if (a.error) std::rethrow_exception(a.error);
        return;
      }
      try {
        if (a.step == Step::lead) {
          start_detached(fsm.take_detached());
        } else {
          execute(a);
        }
      } catch (...) {
        give_up(fsm.abandon(std::current_exception()));
        throw;
      }
    }
  }

 private:
  using Detached = typename Read::Detached;

  void execute(Act& a) {
    switch (a.step) {
      case Step::load:
        return load(*a.ms, a.bulk);
      case Step::sleep:
        return clock_.sleep_for(a.delay);
      case Step::await:
        return await(*a.ms->front(), a);
      default:
        return run_protocol_step(protocol_, a);
    }
  }

  // Loader timeouts are the caller's, in real time.
  void await(M& m, const Act& a) {
    Flight<Value>& f = *m.fl.flight;
    if (!a.timed) {
      f.wait();
      m.ready = true;
      return;
    }
    auto left = a.deadline - clock_.now();
    m.ready = f.wait_until(std::chrono::steady_clock::now() + left);
  }

  // One bulk loader call, or the loader key by key.
  void load(std::vector<M*>& ms, bool bulk) {
    if (!(bulk && bulk_loader_)) {
      for (M* m : ms) call_loader(*m);
      return;
    }
    std::vector<Key> keys;
    keys.reserve(ms.size());
    for (M* m : ms) keys.push_back(m->key);
    for (M* m : ms) report_.load_started(m->mkey);
    auto t0 = clock_.now();
    std::vector<std::optional<Value>> loaded;
    std::exception_ptr error;
    try {
      loaded = bulk_loader_(keys);
    } catch (...) {
      error = std::current_exception();
    }
    take_bulk_load(ms, std::move(loaded), std::move(error), clock_.now() - t0, report_);
  }

  void call_loader(M& m) {
    report_.load_started(m.mkey);
    auto t0 = clock_.now();
    std::optional<Value> v;
    std::exception_ptr error;
    try {
      v = loader_(m.key);
    } catch (...) {
      error = std::current_exception();
    }
    take_load(m, std::move(v), std::move(error), clock_.now() - t0, report_);
  }

  // Leases a machine still held when something escaped: given up, best effort.
  void give_up(std::vector<M*>& ms) {
    for (M* m : ms) {
      try {
        protocol_.release(m->mkey, m->look.token);
      } catch (...) {
        // It expires after lease_ttl anyway.
      }
    }
  }

  void run_lead(Lead& lead) {
    for (;;) {
      Act a = lead.resume(clock_.now());
      if (a.step == Step::done) return;  // its error is in the flights
      try {
        execute(a);
      } catch (...) {
        give_up(lead.abandon(std::current_exception()));
        return;
      }
    }
  }

  // A lead apart from its caller, in a thread of its own; in this one when no
  // thread can be had (the caller then waits for it, without its timeouts).
  void start_detached(std::shared_ptr<Detached> d) {
    {
      std::lock_guard<std::mutex> lock(bg_mu_);
      ++bg_count_;
    }
    try {
      std::thread([this, d]() mutable {
        run_lead(d->fsm);
        d.reset();  // before the count: the cache may go once it is 0
        std::lock_guard<std::mutex> lock(bg_mu_);
        --bg_count_;
        bg_cv_.notify_all();
      }).detach();
    } catch (const std::system_error&) {
      {
        std::lock_guard<std::mutex> lock(bg_mu_);
        --bg_count_;
      }
      run_lead(d->fsm);
    }
  }

  LookupProtocol& protocol_;
  Loader loader_;
  BulkLoader bulk_loader_;
  Clock& clock_;
  const Reporter& report_;
  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  int bg_count_ = 0;
};

}  // namespace cacheaside::detail
