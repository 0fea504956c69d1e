// cacheaside: AsyncCacheAside<Key, Value, Serializer>, the cache-aside loop for
// Asio services over AsyncMetaStore (component async, target cacheaside::async).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "async_loader.hpp"
#include "async_meta_store.hpp"
#include "clock.hpp"
#include "detail/async/caller.hpp"
#include "detail/async/core.hpp"
#include "detail/invalidation/group.hpp"
#include "detail/invalidation/invalidator.hpp"
#include "detail/lookup/key_batch.hpp"
#include "detail/lookup/meta_protocol.hpp"
#include "detail/lookup/meta_steps.hpp"
#include "detail/lookup/value_codec.hpp"
#include "detail/miss/context.hpp"
#include "detail/miss/read_fsm.hpp"
#include "detail/near/near.hpp"
#include "detail/reporter.hpp"
#include "detail/setup.hpp"
#include "error.hpp"
#include "key.hpp"
#include "meta.hpp"
#include "options.hpp"
#include "serializer.hpp"
#include "stats.hpp"

namespace cacheaside {

/// CacheAside for Asio: the same loop, leases, single-flight, timeouts,
/// fail-safe and pending invalidations (the same machines), with calls that
/// never block their thread. Every caller's requests share the store's one
/// connection per server; loaders are asynchronous (see blocking_loader).
///
/// Each call takes an Asio completion token (callback, `use_future`,
/// `use_awaitable`, `deferred`; the default is `deferred`) and completes on the
/// token's executor, never inside the call. A cancellation through the token's
/// cancellation slot completes that caller at once with operation_aborted (a
/// `boost::system::system_error` in the exception_ptr); the load it started goes on for
/// the others and is stored. The store's io_context must run for anything to
/// happen. An idle cache holds no work: run() returns once every call has
/// completed and no invalidation is pending. A pending invalidation is retried
/// on the executor (a timer, then the store) until memcached confirms it, which
/// keeps run() from returning meanwhile; close() ends that. Thread-safe.
/// Destroying the cache closes it and lets calls in flight finish; when the last
/// of them ends on an io thread, the teardown runs on a thread of its own.
///
/// The same Options as CacheAside. The near cache's log is read on demand, on
/// the executor: a get that finds the last read older than near_sync / 2 starts
/// one. With `invalidation_spool`, records are written by the spool's own
/// thread, and a write completes once its record is on disk. With a group, a
/// call whose generation is not cached here reads it first (one more round trip).
template <class Key, class Value, class Serializer>
class AsyncCacheAside {
 public:
  /// Loads one value; see AsyncLoader.
  using Loader = AsyncLoader<Key, Value>;
  /// Loads several values at once; see AsyncBulkLoader.
  using BulkLoader = AsyncBulkLoader<Key, Value>;

  /// Throws Error when store or loader is missing or the options make no sense.
  AsyncCacheAside(std::shared_ptr<AsyncMetaStore> store, Loader loader, Options options = {},
                  Serializer serializer = Serializer())
      : AsyncCacheAside(std::move(store), std::move(loader), nullptr, std::move(options),
                        std::move(serializer)) {}

  /// As above, with the loader async_get_many uses for its misses (null: the
  /// loader, for each missing key at once).
  AsyncCacheAside(std::shared_ptr<AsyncMetaStore> store, Loader loader, BulkLoader bulk_loader,
                  Options options = {}, Serializer serializer = Serializer())
      : core_(Core::make(std::move(store), std::move(loader), std::move(bulk_loader),
                         std::move(options), std::move(serializer))) {}

  /// As above, with loaders the cache first binds to the store's executor
  /// (awaitable_loader, awaitable_bulk_loader).
  template <class L,
            std::enable_if_t<detail::binds_executor<L, asio::any_io_executor>::value, int> = 0>
  AsyncCacheAside(std::shared_ptr<AsyncMetaStore> store, L loader, Options options = {},
                  Serializer serializer = Serializer())
      : AsyncCacheAside(store, Loader(detail::bound_loader(loader, executor_of(store))),
                        std::move(options), std::move(serializer)) {}

  /// As above, with a bulk loader (either may be one the cache binds first).
  template <class L, class B,
            std::enable_if_t<!std::is_same_v<std::decay_t<B>, Options> &&
                                 (detail::binds_executor<L, asio::any_io_executor>::value ||
                                  detail::binds_executor<B, asio::any_io_executor>::value),
                             int> = 0>
  AsyncCacheAside(std::shared_ptr<AsyncMetaStore> store, L loader, B bulk_loader,
                  Options options = {}, Serializer serializer = Serializer())
      : AsyncCacheAside(store, Loader(detail::bound_loader(loader, executor_of(store))),
                        BulkLoader(detail::bound_loader(bulk_loader, executor_of(store))),
                        std::move(options), std::move(serializer)) {}

  AsyncCacheAside(const AsyncCacheAside&) = delete;
  AsyncCacheAside& operator=(const AsyncCacheAside&) = delete;

  /// Closes the cache (see close()); calls in flight still complete.
  ~AsyncCacheAside() { core_->close(); }

  /// Ends what the cache keeps running: the retries of pending invalidations,
  /// after one last round now (what still fails stays in the spool for the next
  /// process, or is dropped and counted without one).
  /// Calls in flight complete as usual; later calls complete with an Error.
  /// Returns at once; the io_context must run for the last round to happen.
  void close() { core_->close(); }

  /// The value for key, from the cache or the loader (then cached); completes
  /// with `void(std::exception_ptr, std::optional<Value>)`. nullopt: the loader
  /// says the key does not exist. The exception is the loader's, a TimeoutError
  /// (hard_timeout), or operation_aborted.
  template <class Token = asio::deferred_t>
  auto async_get(const Key& key, Token&& token = {}) {
    return asio::async_initiate<Token, void(std::exception_ptr, std::optional<Value>)>(
        [core = core_](auto handler, const Key& key) {
          std::optional<Value> near;
          if (core->near_get(key, near)) {  // completed as Asio requires: posted, not inline
            auto ex = asio::get_associated_executor(handler, core->ex);
            return asio::post(ex, [h = std::move(handler), v = std::move(near)]() mutable {
              std::move(h)(nullptr, std::move(v));
            });
          }
          auto caller = start_caller<std::optional<Value>>(std::move(handler), *core);
          if (!caller) return;
          core->generation([core, caller, key](Gen gen) {
            auto read = std::make_shared<Read>(core->ctx, Read::Mode::get, false, 1);
            std::string mkey;
            bool cacheable = core->key_of(key, gen, mkey);
            read->add(key, std::move(mkey), cacheable);
            core->run(
                read,
                [caller, read](std::exception_ptr e) {
                  caller->complete(e, e ? std::nullopt : std::move(read->units().front().value));
                },
                caller);
          });
          caller->initiated();
        },
        token, key);
  }

  /// The near cache's answer for key, now, without I/O and without waiting: true
  /// when it had one (out is the value, or nullopt for a key known not to exist),
  /// false when only async_get can answer (no fresh near entry, a pending
  /// invalidation of the key, the group's generation not known here, a closed
  /// cache). Counted as async_get's near hits are. For a route that answers most
  /// requests from the near cache: it skips the completion's post.
  bool try_get_near(const Key& key, std::optional<Value>& out) { return core_->near_get(key, out); }

  /// Drops key's near copy in this process at once, without I/O: for a change heard
  /// of before the near log says so (a database's notification). memcached keeps
  /// its value: invalidate for that. No-op without a near cache.
  void drop_near(const Key& key) { core_->near_drop(key); }

  /// Values for keys, in input order (duplicates allowed); completes with
  /// `void(std::exception_ptr, std::vector<std::optional<Value>>)`. One round
  /// trip for all hits; misses go to the bulk loader in one call if one is set,
  /// else to the loader for each at once.
  template <class Token = asio::deferred_t>
  auto async_get_many(const std::vector<Key>& keys, Token&& token = {}) {
    using Values = std::vector<std::optional<Value>>;
    return asio::async_initiate<Token, void(std::exception_ptr, Values)>(
        [core = core_](auto handler, const std::vector<Key>& keys) {
          auto caller = start_caller<Values>(std::move(handler), *core);
          if (!caller) return;
          core->generation([core, caller, keys](Gen gen) {
            auto batch = std::make_shared<detail::KeyBatch>(keys.size());
            bool cacheable = true;
            for (const Key& k : keys) {
              std::string mkey;
              cacheable = core->key_of(k, gen, mkey);  // the same for every key
              batch->add(std::move(mkey));
            }
            auto read =
                std::make_shared<Read>(core->ctx, Read::Mode::get, true, batch->unique().size());
            for (std::size_t u = 0; u < batch->unique().size(); ++u)
              read->add(keys[batch->first(u)], batch->unique()[u], cacheable);
            core->run(
                read,
                [caller, read, batch](std::exception_ptr e) {
                  if (e) return caller->complete(e, Values());
                  Values vals;
                  vals.reserve(read->units().size());
                  for (auto& m : read->units()) vals.push_back(std::move(m.value));
                  caller->complete(nullptr, batch->spread(std::move(vals)));
                },
                caller);
          });
          caller->initiated();
        },
        token, keys);
  }

  /// Deletes the cached entry; completes with `void(std::exception_ptr, bool)`.
  /// As CacheAside::invalidate: a load in flight will not store its result; on
  /// false the delete is pending, retried in the background, and reads of the
  /// key here bypass the cache until it is confirmed.
  template <class Token = asio::deferred_t>
  auto async_invalidate(const Key& key, Token&& token = {}) {
    return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
        [core = core_](auto handler, const Key& key) {
          auto caller = start_caller<bool>(std::move(handler), *core);
          if (!caller) return;
          core->generation([core, caller, key](Gen gen) {
            std::string mkey;
            if (!core->key_of(key, gen, mkey))
              return core->unreachable([caller](bool) { caller->complete(nullptr, false); });
            core->report.invalidate_called();
            core->write(Fsm::Kind::remove, std::move(mkey), std::nullopt,
                        [caller](std::exception_ptr e, bool ok) { caller->complete(e, ok); });
          });
          caller->initiated();
        },
        token, key);
  }

  /// async_invalidate() for each key, all at once; true when all were applied.
  template <class Token = asio::deferred_t>
  auto async_invalidate_many(const std::vector<Key>& keys, Token&& token = {}) {
    return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
        [core = core_](auto handler, const std::vector<Key>& keys) {
          auto caller = start_caller<bool>(std::move(handler), *core);
          if (!caller) return;
          if (keys.empty()) {
            caller->complete(nullptr, true);
          } else {
            core->generation([core, caller, keys](Gen gen) {
              auto join = std::make_shared<Join>(keys.size());
              for (const Key& k : keys) {
                auto one = [caller, join](std::exception_ptr e, bool ok) {
                  if (join->one(std::move(e), ok)) caller->complete(join->error, join->ok);
                };
                std::string mkey;
                if (!core->key_of(k, gen, mkey)) {
                  core->unreachable([one](bool) { one(nullptr, false); });
                  continue;
                }
                core->report.invalidate_called();
                core->write(Fsm::Kind::remove, std::move(mkey), std::nullopt, one);
              }
            });
          }
          caller->initiated();
        },
        token, keys);
  }

  /// Writes value through (after you wrote the source of truth); completes with
  /// `void(std::exception_ptr, bool)`. As CacheAside::put: on false the old
  /// value is deleted, or its deletion is pending.
  template <class Token = asio::deferred_t>
  auto async_put(const Key& key, const Value& value, Token&& token = {}) {
    return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
        [core = core_](auto handler, const Key& key, const Value& value) {
          auto caller = start_caller<bool>(std::move(handler), *core);
          if (!caller) return;
          core->report.put_called();
          core->generation([core, caller, key, value](Gen gen) {
            std::string mkey;
            if (!core->key_of(key, gen, mkey))
              return core->unreachable([caller](bool) { caller->complete(nullptr, false); });
            std::optional<detail::Encoded> e(std::in_place);
            if (!core->codec.encode(mkey, value, 0, *e)) e.reset();  // counted by encode
            core->write(Fsm::Kind::put, std::move(mkey), std::move(e),
                        [caller](std::exception_ptr e, bool ok) { caller->complete(e, ok); });
          });
          caller->initiated();
        },
        token, key, value);
  }

  /// Invalidates every key of this cache's group at once (Options::group) by
  /// bumping the group's generation; completes with `void(std::exception_ptr,
  /// bool)`. Throws Error when no group is configured.
  template <class Token = asio::deferred_t>
  auto async_invalidate_all(Token&& token = {}) {
    if (!core_->group.enabled())
      throw Error("cacheaside: async_invalidate_all needs Options::group");
    return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
        [core = core_](auto handler) {
          auto caller = start_caller<bool>(std::move(handler), *core);
          if (!caller) return;
          core->write(Fsm::Kind::all, core->group.key(), std::nullopt,
                      [caller](std::exception_ptr e, bool ok) { caller->complete(e, ok); });
          caller->initiated();
        },
        token);
  }

  /// A snapshot of the counters (the same as CacheAside's).
  Stats stats() const { return core_->report.stats.snapshot(); }

  /// The sizes of the in-process tables (for monitoring: each is bounded).
  Usage usage() {
    return {core_->tables.flights.size(), core_->tables.throttle.size(),
            core_->invalidations.size(), core_->near ? core_->near->size() : 0};
  }

  /// Reads the near cache's invalidation log now (gets do so on demand, on the
  /// executor). Blocks for one or two round trips: not for an io thread.
  /// No-op without a near cache.
  void sync_near() {
    if (core_->near) core_->near->sync_now();
  }

  /// The memcached key used for key (with a group, under its generation: read
  /// now, blocking, unless this process has it cached).
  std::string cache_key(const Key& key) const { return core_->cache_key(key); }

  /// The options in effect (as given, after validation).
  const Options& options() const { return core_->opt; }

  /// The store's executor (where the cache's own work runs between steps).
  asio::any_io_executor get_executor() const { return core_->ex; }

 private:
  using Read = detail::ReadFsm<Key, Value, Serializer>;
  using Fsm = detail::InvalidateFsm<Value>;

  using Core = detail::AsyncCore<Key, Value, Serializer>;

  static asio::any_io_executor executor_of(const std::shared_ptr<AsyncMetaStore>& store) {
    if (!store) throw Error("cacheaside: store is null");
    return store->get_executor();
  }
  using Gen = typename Core::Gen;

  // The join of several writes: the last one tells.
  struct Join {
    explicit Join(std::size_t n) : left(n) {}
    std::atomic<std::size_t> left;
    std::atomic<bool> all{true};
    std::exception_ptr error;  // the first, kept under `left`'s ordering
    bool ok = true;
    std::atomic<bool> has_error{false};
    bool one(std::exception_ptr e, bool applied) {
      if (e && !has_error.exchange(true)) error = std::move(e);
      if (!applied) all.store(false);
      if (left.fetch_sub(1) != 1) return false;
      ok = all.load();
      return true;
    }
  };

  // The caller of a call; null when the cache is closed (then it is completed
  // with an Error, posted).
  template <class R, class Handler>
  static auto start_caller(Handler handler, Core& core) {
    auto caller = std::make_shared<detail::AsyncCaller<Handler, R>>(std::move(handler), core.ex);
    if (core.closed()) {
      caller->complete(std::make_exception_ptr(Error("cacheaside: the cache is closed")), R());
      caller.reset();
      return caller;
    }
    caller->watch_cancellation();
    return caller;
  }

  std::shared_ptr<Core> core_;
};

}  // namespace cacheaside
