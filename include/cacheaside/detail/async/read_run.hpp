// The asynchronous driver of the read machines (internal): does what ReadFsm
// and LeadFsm ask without blocking a thread. Protocol steps run as MetaStepFsm
// rounds on the AsyncMetaStore, loads through the async loaders, sleeps on a
// timer, and a follower waits for its flight by being told when it ends.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../async_loader.hpp"
#include "../../async_meta_store.hpp"
#include "../../clock.hpp"
#include "../lookup/meta_steps.hpp"
#include "../miss/context.hpp"
#include "../miss/lead_fsm.hpp"
#include "../miss/load_result.hpp"
#include "../miss/meta_rounds.hpp"
#include "../miss/miss.hpp"
#include "../miss/read_fsm.hpp"
#include "../reporter.hpp"
#include "caller.hpp"

namespace cacheaside::detail {

/// What the runs of one cache share; owned by the cache, kept alive by each run.
template <class Key, class Value, class Serializer>
struct AsyncReadParts {
  ReadContext<Key, Value, Serializer>& ctx;
  AsyncMetaStore& store;
  MetaLookups& lookups;
  AsyncLoader<Key, Value> loader;
  AsyncBulkLoader<Key, Value> bulk_loader;  // empty: the loader, key by key
  Clock& clock;
  const Reporter& report;
  asio::any_io_executor ex;  // where runs go on between steps
};

/// Runs one machine (a ReadFsm, or a LeadFsm detached from its caller) to its
/// end; then `done` gets the machine's error, if any. The run owns itself: each
/// step's completion holds it.
template <class Key, class Value, class Serializer, class Machine>
class AsyncRun : public std::enable_shared_from_this<AsyncRun<Key, Value, Serializer, Machine>> {
 public:
  using Parts = AsyncReadParts<Key, Value, Serializer>;
  using M = Miss<Key, Value>;
  using Act = Action<M>;
  using Done = std::function<void(std::exception_ptr)>;

  /// keep: what owns parts (the cache's core), held until the run ends.
  AsyncRun(const Parts& parts, std::shared_ptr<const void> keep, std::shared_ptr<Machine> fsm,
           Done done)
      : p_(parts),
        keep_(std::move(keep)),
        fsm_(std::move(fsm)),
        done_(std::move(done)),
        rounds_(parts.lookups),
        timer_(parts.ex),
        work_(asio::prefer(parts.ex, asio::execution::outstanding_work.tracked)) {}

  /// Runs until the first step that waits (or to the end).
  void start() { go(); }

  /// Its caller was cancelled. A run waiting for another caller's load stops
  /// waiting and ends now, or when it comes to such a wait, so nothing of it
  /// stays behind (it leads nothing then: its own leads end before it waits, or
  /// run apart). Thread-safe.
  void cancel() {
    cancelled_.store(true);  // a wait it comes to later ends at once
    std::shared_ptr<Wake> wake;
    std::shared_ptr<Flight<Value>> flight;
    {
      std::lock_guard<std::mutex> lock(await_mu_);
      wake = std::move(awaiting_);
      flight = std::move(awaiting_flight_);
    }
    if (!wake || wake->fired.exchange(true)) return;  // not waiting, or woken already
    flight->forget_waiter(wake->waiter.load());
    asio::post(p_.ex, [self = this->shared_from_this()] {
      self->timer_.cancel();
      self->finish(cancelled_error());
    });
  }

 private:
  using Self = AsyncRun<Key, Value, Serializer, Machine>;
  using ReadType = ReadFsm<Key, Value, Serializer>;
  using LeadType = LeadFsm<Key, Value, Serializer>;
  static constexpr bool is_read = std::is_same_v<Machine, ReadType>;

  // Waiting for a flight: whichever of its end and the deadline comes first.
  struct Wake {
    std::atomic<bool> fired{false};
    std::atomic<std::uint64_t> waiter{0};
  };

  void go() {
    try {
      for (;;) {
        Act a = fsm_->resume(p_.clock.now());
        switch (a.step) {
          case Step::done:
            return finish(a.error);
          case Step::lead:
            if constexpr (is_read) detach(fsm_->take_detached());
            continue;
          case Step::sleep:
            return sleep(a.delay);
          case Step::await:
            return await(a);
          case Step::load:
            return load(a);
          default:
            return protocol(a);
        }
      }
    } catch (...) {
      escaped(std::current_exception());
    }
  }

  void finish(std::exception_ptr error) {
    Done d = std::move(done_);
    done_ = nullptr;
    work_ = asio::any_io_executor();
    if (d) d(std::move(error));
  }

  // Something threw (bad_alloc, a serializer): every flight the machine leads
  // ends with it, its caller gets it, and then its leases are handed back, as
  // a release step's rounds (best effort: they expire after lease_ttl anyway).
  void escaped(std::exception_ptr error) {
    if (releasing_) return;  // the hand-back itself failed
    std::vector<M*>* held = nullptr;
    try {
      held = &fsm_->abandon(error);
    } catch (...) {
    }
    finish(std::move(error));
    if (!held || held->empty()) return;
    releasing_ = true;
    Act release = Act::on(Step::release, *held);
    rounds_.start(release);
    rounds();
  }

  // A lead running apart from its caller (loader timeouts): a run of its own.
  void detach(std::shared_ptr<typename ReadType::Detached> d) {
    std::shared_ptr<LeadType> lead(d, &d->fsm);
    auto r = std::make_shared<AsyncRun<Key, Value, Serializer, LeadType>>(p_, keep_,
                                                                          std::move(lead), nullptr);
    r->start();
  }

  void protocol(Act& a) {
    rounds_.start(a);
    rounds();
  }

  void rounds() {
    try {
      if (auto* round = rounds_.next()) {
        p_.store.async_execute(
            round->data(), round->size(),
            asio::bind_executor(p_.ex, [self = this->shared_from_this()] { self->rounds(); }));
        return;
      }
    } catch (...) {
      return escaped(std::current_exception());
    }
    if (!releasing_) go();
  }

  void sleep(Duration d) {
    if (auto* manual = dynamic_cast<ManualClock*>(&p_.clock)) {
      // A test's clock: time moves when told, so the wait is over at once (as
      // ManualClock::sleep_for does for the blocking cache).
      manual->advance(d);
      asio::post(p_.ex, [self = this->shared_from_this()] { self->go(); });
      return;
    }
    timer_.expires_after(d);
    timer_.async_wait(
        [self = this->shared_from_this()](const boost::system::error_code&) { self->go(); });
  }

  // The flight tells us when it ends; a timed wait also ends at its deadline
  // (real time, as the caller's timeouts are).
  void await(Act& a) {
    if (cancelled_.load()) return finish(cancelled_error());  // nobody waits for it
    M* m = a.ms->front();
    auto flight = m->fl.flight;
    auto wake = std::make_shared<Wake>();
    {
      std::lock_guard<std::mutex> lock(await_mu_);
      awaiting_ = wake;
      awaiting_flight_ = flight;
    }
    if (a.timed) {
      timer_.expires_after(a.deadline - p_.clock.now());
      timer_.async_wait(
          [self = this->shared_from_this(), wake, flight, m](const boost::system::error_code&) {
            if (wake->fired.exchange(true)) return;
            flight->forget_waiter(wake->waiter.load());
            m->ready = false;
            self->go();
          });
    }
    // Last: once registered, the run may go on in another thread.
    auto id = flight->on_done([self = this->shared_from_this(), wake, m, timed = a.timed] {
      if (wake->fired.exchange(true)) return;
      asio::post(self->p_.ex, [self, m, timed] {
        m->ready = true;
        if (timed) self->timer_.cancel();
        self->go();
      });
    });
    wake->waiter.store(id);
  }

  // One bulk call, or the loader for each key (all at once).
  void load(Act& a) {
    loading_ = a.ms;
    std::vector<M*>& ms = *loading_;
    auto self = this->shared_from_this();
    for (M* m : ms) p_.report.load_started(m->mkey);
    auto t0 = p_.clock.now();
    if (a.bulk && p_.bulk_loader) {
      std::vector<Key> keys;
      keys.reserve(ms.size());
      for (M* m : ms) keys.push_back(m->key);
      auto once = std::make_shared<std::atomic<bool>>(false);
      BulkLoadHandler<Value> h = [self, t0, once](std::exception_ptr e,
                                                  std::vector<std::optional<Value>> vs) {
        if (once->exchange(true)) return;  // a loader that answers twice
        asio::post(self->p_.ex, [self, t0, e = std::move(e), vs = std::move(vs)]() mutable {
          try {
            take_bulk_load(*self->loading_, std::move(vs), std::move(e), self->p_.clock.now() - t0,
                           self->p_.report);
          } catch (...) {
            return self->escaped(std::current_exception());
          }
          self->go();
        });
      };
      try {
        p_.bulk_loader(keys, h);
      } catch (...) {
        h(std::current_exception(), {});
      }
      return;
    }
    left_.store(ms.size());
    for (M* m : ms) {
      auto once = std::make_shared<std::atomic<bool>>(false);
      LoadHandler<Value> h = [self, t0, once, m](std::exception_ptr e, std::optional<Value> v) {
        if (once->exchange(true)) return;
        asio::post(self->p_.ex, [self, t0, m, e = std::move(e), v = std::move(v)]() mutable {
          try {
            take_load(*m, std::move(v), std::move(e), self->p_.clock.now() - t0, self->p_.report);
          } catch (...) {
            m->error = std::current_exception();  // this key's load failed; the others go on
          }
          if (self->left_.fetch_sub(1) == 1) self->go();
        });
      };
      try {
        p_.loader(m->key, h);
      } catch (...) {
        h(std::current_exception(), std::nullopt);
      }
    }
  }

  const Parts& p_;
  std::shared_ptr<const void> keep_;
  std::shared_ptr<Machine> fsm_;
  Done done_;
  MetaRounds<M> rounds_;
  asio::steady_timer timer_;
  asio::any_io_executor work_;  // tracked until the end
  std::vector<M*>* loading_ = nullptr;
  std::atomic<std::size_t> left_{0};
  std::atomic<bool> cancelled_{false};
  bool releasing_ = false;  // handing back the leases of a machine something escaped
  std::mutex await_mu_;     // the wait a cancellation may end
  std::shared_ptr<Wake> awaiting_;
  std::shared_ptr<Flight<Value>> awaiting_flight_;
};

}  // namespace cacheaside::detail
