// What the calls of one AsyncCacheAside share (internal): its tables, the machines'
// contexts, stores and loaders; calls in flight keep it alive.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "../../async_loader.hpp"
#include "../../async_meta_store.hpp"
#include "../../clock.hpp"
#include "../../error.hpp"
#include "../../key.hpp"
#include "../../meta.hpp"
#include "../../options.hpp"
#include "../invalidation/group.hpp"
#include "../invalidation/invalidator.hpp"
#include "../lookup/meta_protocol.hpp"
#include "../lookup/meta_steps.hpp"
#include "../lookup/value_codec.hpp"
#include "../miss/context.hpp"
#include "../miss/read_fsm.hpp"
#include "../near/near.hpp"
#include "../reporter.hpp"
#include "../setup.hpp"
#include "group_read.hpp"
#include "near_reader.hpp"
#include "read_run.hpp"
#include "retire.hpp"
#include "retries.hpp"
#include "write_run.hpp"

namespace cacheaside::detail {

template <class Key, class Value, class Serializer>
struct AsyncCore {
  using Loader = AsyncLoader<Key, Value>;
  using BulkLoader = AsyncBulkLoader<Key, Value>;
  using Read = ReadFsm<Key, Value, Serializer>;
  using Run = AsyncRun<Key, Value, Serializer, Read>;
  using Fsm = InvalidateFsm<Value>;
  using Parts = AsyncReadParts<Key, Value, Serializer>;

  /// The group generation a call's keys are built with (known: read, or no group).
  struct Gen {
    bool known = true;
    std::uint64_t value = 0;
  };

  /// A core whose last owner, on an io thread, hands its teardown to another.
  static std::shared_ptr<AsyncCore> make(std::shared_ptr<AsyncMetaStore> s, Loader loader,
                                         BulkLoader bulk, Options options, Serializer serializer) {
    std::shared_ptr<AsyncCore> c(new AsyncCore(std::move(s), std::move(loader), std::move(bulk),
                                               std::move(options), std::move(serializer)),
                                 &retire);
    c->self = c;
    c->retries->bind(c->invalidations, c);
    if (c->near) {
      c->near->read_on_demand([w = std::weak_ptr<AsyncCore>(c)] {
        if (auto core = w.lock())
          std::make_shared<AsyncNearRead<Value>>(*core->store, *core->near, core->ex, core)
              ->start();
      });
    }
    return c;
  }

  AsyncCore(std::shared_ptr<AsyncMetaStore> s, Loader loader, BulkLoader bulk, Options options,
            Serializer serializer)
      : store(s ? std::move(s) : throw Error("cacheaside: store is null")),
        opt(detail::checked(std::move(options))),
        clock(opt.clock ? opt.clock : SystemClock::instance()),
        report(opt.name, opt.on_event),
        codec(std::move(serializer), opt, detail::negative_ttl(opt), *clock, report),
        lookups(detail::lookup_policy(opt, Serializer::codec, clock, report)),
        background(std::make_shared<MetaStore>(detail::unmasked_config(*store))),
        retry_protocol(*background, detail::lookup_policy(opt, Serializer::codec, clock, report)),
        group(background, detail::group_counter_key(opt), opt.group_cache, clock),
        near(detail::make_near<Value>(opt, background, clock, report, NearReading::on_demand)),
        tables(opt, *clock),
        retries(std::make_shared<detail::AsyncRetries<Value>>(*store, lookups, group,
                                                              store->get_executor())),
        invalidations(retry_protocol, group, near.get(), tables, retried(opt, group.key(), retries),
                      report),
        ctx(opt, report, codec, invalidations.pending(), near.get(), tables),
        ex(store->get_executor()),
        parts{ctx,    *store, lookups, checked_loader(std::move(loader)), std::move(bulk),
              *clock, report, ex} {}

  // The pending invalidations' settings: their rounds run by `r`, on the executor.
  static PendingInvalidations::Settings retried(const Options& o, const std::string& group_key,
                                                const std::shared_ptr<AsyncRetries<Value>>& r) {
    auto s = detail::pending_settings(o, group_key);
    s.wake = [w = std::weak_ptr<AsyncRetries<Value>>(r)](PendingInvalidations::Time at) {
      if (auto retries = w.lock()) retries->wake(at);
    };
    return s;
  }

  static Loader checked_loader(Loader l) {
    if (!l) throw Error("cacheaside: loader is empty");
    return l;
  }

  // The group's generation, then `then(gen)`: at once without a group or with
  // the generation cached here, else after reading it (unknown if that failed).
  template <class Then>
  void generation(Then then) {
    if (!group.enabled()) return then(Gen{});
    if (auto g = group.cached()) return then(Gen{true, *g});
    auto core = self.lock();
    std::make_shared<detail::AsyncGroupRead>(
        *store, group, ex, core,
        [core, then](std::optional<std::uint64_t> g, StoreStatus failed) mutable {
          if (!g) core->report.cache_error(core->group.key(), failed, "group generation");
          then(Gen{g.has_value(), g.value_or(0)});
        })
        ->start();
  }

  // The memcached key of k; false: the generation is unknown, nothing may be stored.
  bool key_of(const Key& k, Gen gen, std::string& out) const {
    const auto& text = key_traits<Key>::to_string(k);
    if (!group.enabled()) {
      detail::plain_cache_key(opt, text, out);
      return true;
    }
    detail::grouped_cache_key(opt, text, gen.value, out);
    return gen.known;
  }

  // A get the near cache answers, found without I/O, a caller or a read run: what
  // ReadFsm's first step does for one key (no group, or its generation cached here).
  bool near_get(const Key& k, std::optional<Value>& out) {
    if (!near || closed()) return false;
    Gen gen;
    if (group.enabled()) {
      auto g = group.cached();
      if (!g) return false;
      gen = Gen{true, *g};
    }
    thread_local std::string mkey;  // reused: no allocation per call
    key_of(k, gen, mkey);
    return !invalidations.pending().holds(mkey) && ctx.near_hit(mkey, out, true);
  }

  // Drops k's near copy (all of them when the group's generation is not known here).
  void near_drop(const Key& k) {
    if (!near) return;
    Gen gen;
    if (group.enabled()) {
      auto g = group.cached();
      if (!g) return near->drop_all();
      gen = Gen{true, *g};
    }
    std::string mkey;
    key_of(k, gen, mkey);
    near->drop(mkey);
  }

  std::string cache_key(const Key& key) {
    Gen gen;
    if (group.enabled()) {
      StoreStatus failed = StoreStatus::ok;
      auto g = group.current(failed);
      gen = Gen{g.has_value(), g.value_or(0)};
    }
    std::string out;
    key_of(key, gen, out);
    return out;
  }

  // Runs a caller's read; a cancellation of the caller ends what it waits for.
  template <class Caller>
  void run(std::shared_ptr<Read> read, typename Run::Done done,
           const std::shared_ptr<Caller>& caller) {
    if (caller->finished()) return;  // cancelled before its read began
    auto r = std::make_shared<Run>(parts, std::shared_ptr<const void>(self.lock()), std::move(read),
                                   std::move(done));
    r->start();
    caller->on_cancelled([w = std::weak_ptr<Run>(r)] {
      if (auto running = w.lock()) running->cancel();
    });
  }

  // A write's caller completes once what it made pending is spooled: the spool's
  // writer thread waits for the disk, never an io thread.
  void write(typename Fsm::Kind kind, std::string mkey, std::optional<detail::Encoded> value,
             std::function<void(std::exception_ptr, bool)> done) {
    auto core = self.lock();
    std::make_shared<detail::AsyncWriteRun<Value>>(
        *store, lookups, invalidations.context(), group, kind, std::move(mkey), std::move(value),
        ex, core,
        [core, done = std::move(done)](std::exception_ptr e, bool ok, StoreStatus) {
          core->invalidations.when_durable([done, e, ok](bool) { done(e, ok); });
        })
        ->start();
  }

  // A write whose key's group generation could not be read: a pending group bump.
  template <class Then>
  void unreachable(Then then) {
    invalidations.note_unreachable_group();
    invalidations.when_durable(std::move(then));
  }

  /// Ends the retries of pending invalidations after a last round (now, on the
  /// executor). Returns at once.
  void close() {
    if (closed_.exchange(true)) return;
    retries->close([keep = self.lock()] {});  // the core lasts until that round is over
  }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  std::shared_ptr<AsyncMetaStore> store;
  Options opt;
  std::shared_ptr<Clock> clock;
  detail::Reporter report;
  detail::ValueCodec<Value, Serializer> codec;
  detail::MetaLookups lookups;
  // Blocking connections to the same servers, for the calls documented to block
  // (sync_near(), cache_key()'s group read); the rest runs on the executor.
  std::shared_ptr<MetaStore> background;
  detail::MetaProtocol retry_protocol;        // the Invalidator's blocking path: unused here
  detail::GroupGeneration group;              // none
  std::unique_ptr<detail::Near<Value>> near;  // null: off
  detail::MissTables<Value> tables;
  std::shared_ptr<detail::AsyncRetries<Value>> retries;  // an io object: goes on the io thread
  detail::Invalidator<Value> invalidations;
  detail::ReadContext<Key, Value, Serializer> ctx;
  asio::any_io_executor ex;
  Parts parts;
  std::weak_ptr<AsyncCore> self;

 private:
  std::atomic<bool> closed_{false};

  // The teardown writes the spool and closes the blocking connections: when the
  // last run lets go on an io thread, a thread of its own does that. The io objects
  // (the store, the retries' timer) are let go here.
  static void retire(AsyncCore* c) {
    if (!may_run_in_this_thread(c->ex)) return delete c;
    std::shared_ptr<AsyncMetaStore> store = std::move(c->store);
    auto retries = std::move(c->retries);
    Retirement::run([c] { delete c; });
  }
};

}  // namespace cacheaside::detail
