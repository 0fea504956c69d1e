// cacheaside: CacheAside<Key, Value, Serializer> (standard library and POSIX files).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "detail/invalidation/group.hpp"
#include "detail/invalidation/invalidator.hpp"
#include "detail/invalidation/pending.hpp"
#include "detail/lookup/classic_protocol.hpp"
#include "detail/lookup/key_batch.hpp"
#include "detail/lookup/value_codec.hpp"
#include "detail/miss/blocking_driver.hpp"
#include "detail/miss/context.hpp"
#include "detail/miss/read_fsm.hpp"
#include "detail/near/near.hpp"
#include "detail/random.hpp"
#include "detail/reporter.hpp"
#include "detail/setup.hpp"
#include "error.hpp"
#include "key.hpp"
#include "options.hpp"
#include "protocol.hpp"
#include "serializer.hpp"
#include "stats.hpp"
#include "store.hpp"

namespace cacheaside {

/// The cache-aside loop in one object: `get` reads memcached, and on a miss
/// calls the loader, stores the result with a TTL and returns it; `invalidate`
/// deletes.
///
/// Thread-safe: share one instance between threads. Cache failures (server
/// down, timeouts, unreadable values) never throw: they degrade to the loader
/// and are counted in `stats()`. Exceptions from the loader propagate to the
/// caller and to every caller sharing that load, unless a stale copy can be
/// served (`Options::max_stale`).
///
/// With leases on (the default), a `get` or `get_many` that begins after an
/// `invalidate*` or `put` of a key has returned, in this process or any other
/// on the same memcached, never returns a value loaded before that write began
/// (docs/wire-format.md, "Concurrency"). The destructor waits for loads still
/// running in the background (soft/hard timeouts).
template <class Key, class Value, class Serializer>
class CacheAside {
 public:
  /// Loads one value from the source of truth; nullopt means "does not exist".
  using Loader = std::function<std::optional<Value>(const Key&)>;
  /// Loads several values at once; the result is aligned with the input keys.
  using BulkLoader = std::function<std::vector<std::optional<Value>>(const std::vector<Key>&)>;

  /// Throws `Error` when store or loader is missing or the options make no sense.
  CacheAside(std::shared_ptr<Store> store, Loader loader, Options options = {},
             Serializer serializer = Serializer())
      : CacheAside(std::move(store), std::move(loader), nullptr, std::move(options),
                   std::move(serializer)) {}

  /// As above, with the loader get_many uses for its misses (null: the loader,
  /// key by key).
  CacheAside(std::shared_ptr<Store> store, Loader loader, BulkLoader bulk_loader,
             Options options = {}, Serializer serializer = Serializer())
      : store_(std::move(store)),
        opt_(detail::checked(std::move(options))),
        clock_(opt_.clock ? opt_.clock : SystemClock::instance()),
        report_(opt_.name, opt_.on_event),
        codec_(std::move(serializer), opt_, detail::negative_ttl(opt_), *clock_, report_),
        group_(store_, detail::group_counter_key(opt_), opt_.group_cache, clock_),
        protocol_(detail::make_protocol(store_, opt_, Serializer::codec, clock_, report_)),
        near_(detail::make_near<Value>(opt_, store_, clock_, report_)),
        tables_(opt_, *clock_),
        invalidations_(*protocol_, group_, near_.get(), tables_,
                       detail::pending_settings(opt_, group_.key()), report_),
        reads_(opt_, report_, codec_, invalidations_.pending(), near_.get(), tables_),
        driver_(*protocol_, std::move(loader), std::move(bulk_loader), *clock_, report_) {}

  CacheAside(const CacheAside&) = delete;
  CacheAside& operator=(const CacheAside&) = delete;

  /// The value for key: from the cache, or from the loader (then cached).
  /// nullopt when the loader says the key does not exist (cached for
  /// negative_ttl).
  std::optional<Value> get(const Key& key) {
    std::string mkey;
    bool cacheable = cache_key_to(key, mkey);
    Read r(reads_, Read::Mode::get, false, 1);
    r.add(key, std::move(mkey), cacheable);
    driver_.run(r);
    return std::move(r.units().front().value);
  }

  /// Values for keys, in input order (duplicates allowed). One multi-get round
  /// trip for all hits; misses go to the bulk loader (one call with exactly the
  /// missing keys) if one is set, else to the loader one by one, and are stored.
  /// Keys whose lease another process holds are waited for after the others
  /// are loaded and stored (a second bulk call, if they still need loading).
  std::vector<std::optional<Value>> get_many(const std::vector<Key>& keys) {
    detail::KeyBatch batch(keys.size());
    std::vector<char> cacheable;
    cacheable.reserve(keys.size());
    for (const Key& k : keys) {
      std::string mkey;
      bool ok = cache_key_to(k, mkey);
      if (batch.add(std::move(mkey))) cacheable.push_back(ok);
    }
    Read r(reads_, Read::Mode::get, true, batch.unique().size());
    for (std::size_t u = 0; u < batch.unique().size(); ++u)
      r.add(keys[batch.first(u)], batch.unique()[u], cacheable[u] != 0);
    driver_.run(r);
    std::vector<std::optional<Value>> vals;
    vals.reserve(r.units().size());
    for (auto& m : r.units()) vals.push_back(std::move(m.value));
    return batch.spread(std::move(vals));
  }

  /// The cached value, without ever calling the loader. nullopt when absent,
  /// expired, negative or unreadable.
  std::optional<Value> peek(const Key& key) {
    std::string mkey;
    bool cacheable = cache_key_to(key, mkey);
    if (!cacheable) return std::nullopt;
    Read r(reads_, Read::Mode::peek, false, 1);
    r.add(key, std::move(mkey), true);
    driver_.run(r);
    return std::move(r.units().front().value);
  }

  /// Writes value through to the cache (after you wrote the source of truth).
  /// Overrides any load in flight. False when the cache failed or refused the
  /// value (counted); then the old value is deleted, or, if the store cannot
  /// be reached, its deletion is pending (see `invalidate`).
  bool put(const Key& key, const Value& value) {
    report_.put_called();
    std::string mkey;
    if (!cache_key_to(key, mkey)) return invalidations_.unreachable_group();
    detail::Encoded e;
    bool encoded = codec_.encode(mkey, value, 0, e);  // a refusal here is counted by encode
    return invalidations_.put(mkey, encoded ? &e : nullptr);
  }

  /// Deletes the cached entry (value, stale copy, negative entry or lease). A
  /// load in flight for this key will not store its result, and no caller that
  /// starts after this returns gets it. False on a cache error (counted): the
  /// delete is then pending, retried in the background until the store confirms
  /// it, and reads of the key here bypass the cache until then.
  bool invalidate(const Key& key) {
    std::string mkey;
    if (!cache_key_to(key, mkey)) return invalidations_.unreachable_group();
    report_.invalidate_called();
    return invalidations_.invalidate(mkey);
  }

  /// invalidate() for each key; false if any failed.
  bool invalidate_many(const std::vector<Key>& keys) {
    bool ok = true;
    for (const Key& k : keys) ok = invalidate(k) && ok;
    return ok;
  }

  /// Invalidates every key of this cache's group at once (Options::group) by
  /// bumping the group's generation in the store. Throws Error when no group is
  /// configured.
  bool invalidate_all() {
    if (!group_.enabled()) throw Error("cacheaside: invalidate_all needs Options::group");
    return invalidations_.invalidate_all();
  }

  /// Reads the near cache's invalidation log now (the background does so every
  /// near_sync / 2). No-op without a near cache.
  void sync_near() {
    if (near_) near_->sync_now();
  }

  /// Retries pending invalidations now, in this thread (the background does so
  /// anyway, at most `invalidation_retry` apart); returns how many are left.
  std::size_t retry_pending() { return invalidations_.retry_now(); }

  /// Sets the loader get_many uses for its misses. Not synchronized with calls
  /// in flight: set it before sharing the instance, or pass it to the constructor.
  void set_bulk_loader(BulkLoader bulk) { driver_.set_bulk_loader(std::move(bulk)); }

  /// A snapshot of the counters.
  Stats stats() const { return report_.stats.snapshot(); }

  /// The sizes of the in-process tables (for monitoring: each is bounded).
  Usage usage() {
    return {tables_.flights.size(), tables_.throttle.size(), invalidations_.size(),
            near_ ? near_->size() : 0};
  }

  /// The memcached key used for key (including the group generation, if any).
  std::string cache_key(const Key& key) {
    std::string mkey;
    cache_key_to(key, mkey);
    return mkey;
  }

  /// The options in effect (as given, after validation).
  const Options& options() const { return opt_; }

 private:
  using Near = detail::Near<Value>;
  using Read = detail::ReadFsm<Key, Value, Serializer>;

  // Builds the memcached key; false when the group generation could not be read.
  bool cache_key_to(const Key& key, std::string& out) {
    const auto& text = key_traits<Key>::to_string(key);
    if (!group_.enabled()) {
      detail::plain_cache_key(opt_, text, out);
      return true;
    }
    StoreStatus failed = StoreStatus::ok;
    auto gen = group_.current(failed);
    if (!gen) report_.cache_error(group_.key(), failed, "group generation");
    detail::grouped_cache_key(opt_, text, gen.value_or(0), out);
    return gen.has_value();
  }

  std::shared_ptr<Store> store_;
  Options opt_;
  std::shared_ptr<Clock> clock_;
  detail::Reporter report_;
  detail::ValueCodec<Value, Serializer> codec_;
  detail::GroupGeneration group_;
  std::unique_ptr<LookupProtocol> protocol_;
  std::unique_ptr<Near> near_;  // null: off
  detail::MissTables<Value> tables_;
  detail::Invalidator<Value> invalidations_;  // after what it writes with, before the reads
  detail::ReadContext<Key, Value, Serializer> reads_;
  detail::BlockingDriver<Key, Value, Serializer> driver_;  // last: waits for background loads
};

}  // namespace cacheaside
