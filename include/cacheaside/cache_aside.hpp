// cacheaside: CacheAside<Key, Value, Serializer> (standard library only).
#pragma once

#include <algorithm>
#include <atomic>
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
#include <unordered_map>
#include <utility>
#include <vector>

#include "detail/clock.hpp"
#include "detail/flight.hpp"
#include "envelope.hpp"
#include "error.hpp"
#include "key.hpp"
#include "options.hpp"
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
/// The destructor waits for loads still running in the background (soft/hard
/// timeouts).
template <class Key, class Value, class Serializer>
class CacheAside {
 public:
  /// Loads one value from the source of truth; nullopt means "does not exist".
  using Loader = std::function<std::optional<Value>(const Key&)>;
  /// Loads several values at once; the result is aligned with the input keys.
  using BulkLoader = std::function<std::vector<std::optional<Value>>(const std::vector<Key>&)>;

  /// Throws `Error` when store or loader is missing or the options make no
  /// sense.
  CacheAside(std::shared_ptr<Store> store, Loader loader, Options options = {},
             Serializer serializer = Serializer())
      : store_(std::move(store)),
        loader_(std::move(loader)),
        opt_(std::move(options)),
        serializer_(std::move(serializer)) {
    if (!store_) throw Error("cacheaside: store is null");
    if (!loader_) throw Error("cacheaside: loader is empty");
    if (opt_.ttl.count() <= 0) throw Error("cacheaside: ttl must be positive");
    if (opt_.ttl_jitter < 0 || opt_.ttl_jitter >= 1)
      throw Error("cacheaside: ttl_jitter must be in [0, 1)");
    if (opt_.early_refresh_beta < 0) throw Error("cacheaside: early_refresh_beta must be >= 0");
    if (opt_.max_stale.count() < 0 || opt_.soft_timeout.count() < 0 ||
        opt_.hard_timeout.count() < 0)
      throw Error("cacheaside: durations must not be negative");
    if (opt_.negative_ttl) {
      negative_ttl_ = *opt_.negative_ttl;
    } else {
      negative_ttl_ = std::max<std::chrono::milliseconds>(opt_.ttl / 10, std::chrono::seconds(1));
    }
    if (opt_.format == Format::raw) negative_ttl_ = std::chrono::milliseconds(0);
    if (!opt_.group.empty()) group_key_ = encode_key(opt_.group, max_key_length - 2) + "%G";
  }

  CacheAside(const CacheAside&) = delete;
  CacheAside& operator=(const CacheAside&) = delete;

  ~CacheAside() {
    std::unique_lock<std::mutex> lock(bg_mu_);
    bg_cv_.wait(lock, [&] { return bg_count_ == 0; });
  }

  /// The value for key: from the cache, or from the loader (then cached).
  /// nullopt when the loader says the key does not exist (cached for
  /// negative_ttl).
  std::optional<Value> get(const Key& key) {
    std::string mkey;
    if (!cache_key_to(key, mkey)) return load_uncached(key, mkey);
    thread_local StoreItem scratch;
    StoreStatus st = store_->get(mkey, scratch);
    Read r = classify(mkey, st, scratch);
    switch (r.state) {
      case State::fresh:
        on_hit(mkey, false);
        if (r.refresh_early) return refresh_early(key, mkey, std::move(r));
        return std::move(r.value);
      case State::negative:
        on_hit(mkey, true);
        return std::nullopt;
      default:
        break;
    }
    on_miss(mkey);
    return load_path(key, mkey, std::move(r));
  }

  /// Values for keys, in input order (duplicates allowed). One multi-get round
  /// trip for all hits; misses go to the bulk loader (one call with exactly the
  /// missing keys) if one is set, else to the loader one by one, and are
  /// stored.
  std::vector<std::optional<Value>> get_many(const std::vector<Key>& keys) {
    const std::size_t n = keys.size();
    std::vector<std::optional<Value>> out(n);
    if (n == 0) return out;
    std::vector<std::string> mkeys(n);
    bool cacheable = true;
    for (std::size_t i = 0; i < n; ++i)
      if (!cache_key_to(keys[i], mkeys[i])) cacheable = false;
    // Deduplicate with a small open-addressing table: no allocation per key.
    std::vector<std::size_t> slot(n), first, uses;
    std::vector<std::string> ukeys;
    first.reserve(n);
    uses.reserve(n);
    ukeys.reserve(n);
    {
      std::size_t cap = 16;
      while (cap < 2 * n) cap *= 2;
      constexpr std::size_t empty = static_cast<std::size_t>(-1);
      std::vector<std::size_t> table(cap, empty);
      std::hash<std::string_view> hash;
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t h = hash(mkeys[i]) & (cap - 1);
        while (table[h] != empty && ukeys[table[h]] != mkeys[i]) h = (h + 1) & (cap - 1);
        if (table[h] == empty) {
          table[h] = ukeys.size();
          first.push_back(i);
          uses.push_back(0);
          ukeys.push_back(std::move(mkeys[i]));
        }
        slot[i] = table[h];
        ++uses[slot[i]];
      }
    }
    std::vector<std::optional<Value>> uvals(ukeys.size());
    std::vector<Read> pending_reads;
    std::vector<std::size_t> pending;
    if (!cacheable) {
      for (std::size_t u = 0; u < ukeys.size(); ++u) {
        pending.push_back(u);
        Read r;
        r.state = State::error;
        pending_reads.push_back(std::move(r));
      }
    } else {
      std::vector<StoreItem> items;
      std::vector<char> found;
      StoreStatus st = store_->get_multi(ukeys, items, found);
      if (is_failure(st)) cache_error(ukeys.front(), st, "get_multi");
      std::int64_t now = detail::unix_ms();
      std::uint64_t hits = 0, negative_hits = 0;
      for (std::size_t u = 0; u < ukeys.size(); ++u) {
        Read r;
        if (is_failure(st))
          r.state = State::error;
        else if (found[u])
          r = classify(ukeys[u], StoreStatus::ok, items[u], now);
        if (r.state == State::fresh || r.state == State::negative) {
          ++hits;
          if (r.state == State::negative) ++negative_hits;
          if (opt_.on_event)
            emit(r.state == State::fresh ? EventType::hit : EventType::negative_hit, ukeys[u]);
          uvals[u] = std::move(r.value);
        } else {
          on_miss(ukeys[u]);
          pending.push_back(u);
          pending_reads.push_back(std::move(r));
        }
      }
      stats_.bump(stats_.hits, hits);
      stats_.bump(stats_.negative_hits, negative_hits);
    }
    if (!pending.empty()) {
      if (bulk_loader_) {
        load_bulk(keys, first, ukeys, pending, pending_reads, uvals);
      } else {
        for (std::size_t p = 0; p < pending.size(); ++p) {
          std::size_t u = pending[p];
          uvals[u] = load_path(keys[first[u]], ukeys[u], std::move(pending_reads[p]));
        }
      }
    }
    // Move each value to its last use; copy only for duplicates.
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t u = slot[i];
      if (--uses[u] == 0)
        out[i] = std::move(uvals[u]);
      else
        out[i] = uvals[u];
    }
    return out;
  }

  /// The cached value, without ever calling the loader. nullopt when absent,
  /// expired, negative or unreadable.
  std::optional<Value> peek(const Key& key) {
    std::string mkey;
    if (!cache_key_to(key, mkey)) return std::nullopt;
    StoreItem item;
    StoreStatus st = store_->get(mkey, item);
    Read r = classify(mkey, st, item);
    if (r.state == State::fresh) return std::move(r.value);
    return std::nullopt;
  }

  /// Writes value through to the cache (after you wrote the source of truth).
  /// Overrides any load in flight. False when the cache failed or refused the
  /// value (counted).
  bool put(const Key& key, const Value& value) {
    stats_.bump(stats_.puts);
    std::string mkey;
    if (!cache_key_to(key, mkey)) return false;
    emit(EventType::put, mkey);
    flights_.forget(mkey);
    std::string bytes;
    std::uint32_t flags = 0;
    Exptime exp = 0;
    StoreStatus st = encode_value(mkey, value, 0, bytes, flags, exp)
                         ? store_->set(mkey, bytes, flags, exp)
                         : StoreStatus::too_large;
    if (check_write(mkey, st, "set")) return true;
    // The new value could not be cached: the old one must not stay.
    store_->remove(mkey);
    return false;
  }

  /// Deletes the cached entry (value, stale copy, negative entry or lease). A
  /// load in flight for this key will not store its result. False only on a
  /// cache error (counted).
  bool invalidate(const Key& key) {
    std::string mkey;
    if (!cache_key_to(key, mkey)) return false;
    return invalidate_mkey(mkey);
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
    if (group_key_.empty()) throw Error("cacheaside: invalidate_all needs Options::group");
    std::uint64_t gen = 0;
    StoreStatus st =
        store_->incr(group_key_, 1, static_cast<std::uint64_t>(detail::unix_ms()), 0, gen);
    if (st != StoreStatus::ok) {
      cache_error(group_key_, st, "incr");
      return false;
    }
    std::lock_guard<std::mutex> lock(group_mu_);
    group_gen_ = gen;
    group_read_ = detail::SteadyClock::now();
    group_valid_ = true;
    return true;
  }

  /// Sets the loader get_many uses for its misses.
  void set_bulk_loader(BulkLoader bulk) { bulk_loader_ = std::move(bulk); }

  /// A snapshot of the counters.
  Stats stats() const { return stats_.snapshot(); }

  /// The memcached key used for key (including the group generation, if any).
  std::string cache_key(const Key& key) {
    std::string mkey;
    cache_key_to(key, mkey);
    return mkey;
  }

  const Options& options() const { return opt_; }

 private:
  enum class State {
    fresh,     // usable value
    negative,  // cached absence, fresh
    stale,     // logically expired, within max_stale: servable on failure
    expired,   // present but not servable (expired, negative past expiry); has a
               // CAS id
    lease,     // another caller holds the lease
    absent,    // not in the cache
    error,     // the store failed: load without caching
  };

  struct Read {
    State state = State::absent;
    std::optional<Value> value;  // fresh or stale value
    std::uint64_t cas = 0;
    bool refresh_early = false;
  };

  // What the load of one key may do with its result.
  struct Ticket {
    enum Mode { store_set, store_cas, no_store, resolved } mode = no_store;
    std::uint64_t cas = 0;
    bool marker = false;         // we placed a lease marker under the key
    std::string side_key;        // refresh lease to release
    std::optional<Value> value;  // when resolved
    bool stale = false;          // resolved to a stale copy
  };

  struct Outcome {
    std::optional<Value> value;
    bool stale = false;
    bool overtaken = false;  // loaded before a write: not stored
  };

  bool leases_on() const { return opt_.leases && opt_.format == Format::envelope; }

  // ---- keys
  // -------------------------------------------------------------------------

  // Builds the memcached key; false when the group generation could not be
  // read.
  bool cache_key_to(const Key& key, std::string& out) {
    const auto& text = key_traits<Key>::to_string(key);
    out.clear();
    if (group_key_.empty()) {
      if (opt_.key_prefix.empty()) {
        encode_key_to(text, out);
      } else {
        std::string full;
        full.reserve(opt_.key_prefix.size() + text.size());
        full.append(opt_.key_prefix).append(text);
        encode_key_to(full, out);
      }
      return true;
    }
    auto gen = group_generation();
    std::string suffix = "%g" + std::to_string(gen.value_or(0));
    encode_key_to(opt_.key_prefix + std::string(text), out, max_key_length - suffix.size());
    out += suffix;
    return gen.has_value();
  }

  std::optional<std::uint64_t> group_generation() {
    auto now = detail::SteadyClock::now();
    {
      std::lock_guard<std::mutex> lock(group_mu_);
      if (group_valid_ && opt_.group_cache.count() > 0 && now - group_read_ < opt_.group_cache)
        return group_gen_;
    }
    std::uint64_t gen = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      StoreItem item;
      StoreStatus st = store_->get(group_key_, item);
      if (st == StoreStatus::ok && parse_u64(item.value, gen)) break;
      if (st == StoreStatus::not_found) {
        // A fresh counter starts at the current time, so a counter that was
        // evicted never comes back to a generation that was used before.
        auto init = static_cast<std::uint64_t>(detail::unix_ms());
        StoreStatus a = store_->add(group_key_, std::to_string(init), 0, 0);
        if (a == StoreStatus::ok) {
          gen = init;
          break;
        }
        if (a == StoreStatus::not_stored) continue;
        st = a;
      }
      cache_error(group_key_, st, "group generation");
      return std::nullopt;
    }
    std::lock_guard<std::mutex> lock(group_mu_);
    group_gen_ = gen;
    group_read_ = now;
    group_valid_ = true;
    return gen;
  }

  static bool parse_u64(std::string_view s, std::uint64_t& v) {
    if (s.empty() || s.size() > 20) return false;
    v = 0;
    for (char c : s) {
      if (c == ' ' || c == '\r' || c == '\n') break;  // incr may pad with spaces
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
  }

  static std::string side_key(const std::string& mkey) {
    // "%L" never ends an encoded key, and never starts one.
    if (mkey.size() + 2 <= max_key_length) return mkey + "%L";
    return "%L" + detail::sha256_hex(mkey);
  }

  // ---- events and counters
  // ------------------------------------------------------------

  void emit(EventType type, std::string_view key, std::chrono::nanoseconds d = {},
            std::string_view reason = {}) const {
    if (!opt_.on_event) return;
    try {
      opt_.on_event(Event{type, opt_.name, key, d, reason});
    } catch (...) {
      // A failing hook must not break the cache.
    }
  }

  void on_hit(const std::string& mkey, bool negative) {
    stats_.bump(stats_.hits);
    if (negative) stats_.bump(stats_.negative_hits);
    emit(negative ? EventType::negative_hit : EventType::hit, mkey);
  }
  void on_miss(const std::string& mkey) {
    stats_.bump(stats_.misses);
    emit(EventType::miss, mkey);
  }
  void cache_error(std::string_view mkey, StoreStatus st, const char* op) {
    stats_.bump(stats_.cache_errors);
    if (opt_.on_event) {
      std::string reason = std::string(op) + ": " + to_string(st);
      emit(EventType::cache_error, mkey, {}, reason);
    }
  }
  void served_stale(const std::string& mkey, std::string_view why) {
    stats_.bump(stats_.stale_served);
    emit(EventType::stale_served, mkey, {}, why);
  }

  // ---- decoding
  // ---------------------------------------------------------------------

  Read classify(const std::string& mkey, StoreStatus st, const StoreItem& item,
                std::int64_t now = detail::unix_ms()) {
    Read r;
    if (st == StoreStatus::not_found) return r;
    if (st != StoreStatus::ok) {
      cache_error(mkey, st, "get");
      r.state = State::error;
      return r;
    }
    envelope::Entry e = envelope::decode(item.value, item.flags);
    switch (e.kind) {
      case envelope::Kind::raw:
        if (opt_.format != Format::raw) return undecodable(mkey, "foreign value (flags 0)");
        if (!deserialize(mkey, e.payload, r.value)) return undecodable(mkey, nullptr);
        r.state = State::fresh;
        r.cas = item.cas;
        return r;
      case envelope::Kind::lease:
        r.state = leases_on() ? State::lease : State::absent;
        r.cas = item.cas;
        return r;
      case envelope::Kind::unknown:
        return undecodable(mkey, "unknown flags or header");
      case envelope::Kind::negative:
      case envelope::Kind::value:
        break;
    }
    if (e.codec != Serializer::codec) return undecodable(mkey, "codec mismatch");
    r.cas = item.cas;
    bool fresh = now < e.expiry_ms;
    if (e.kind == envelope::Kind::negative) {
      r.state = fresh ? State::negative : State::expired;
      return r;
    }
    bool stale_ok =
        !fresh && opt_.max_stale.count() > 0 && now < e.expiry_ms + opt_.max_stale.count();
    if (!fresh && !stale_ok) {
      r.state = State::expired;
      return r;
    }
    if (!deserialize(mkey, e.payload, r.value)) return undecodable(mkey, nullptr);
    r.state = fresh ? State::fresh : State::stale;
    if (fresh && opt_.early_refresh_beta > 0 && e.load_us > 0) {
      // XFetch: refresh when now - delta * beta * ln(rand) >= expiry.
      double gap = -static_cast<double>(e.load_us) / 1000.0 * opt_.early_refresh_beta *
                   std::log(detail::uniform_open0());
      r.refresh_early = static_cast<double>(now) + gap >= static_cast<double>(e.expiry_ms);
    }
    return r;
  }

  bool deserialize(const std::string& mkey, std::string_view bytes, std::optional<Value>& out) {
    try {
      out.emplace(serializer_.deserialize(bytes));
      return true;
    } catch (const std::exception& ex) {
      emit(EventType::decode_error, mkey, {}, ex.what());
    } catch (...) {
      emit(EventType::decode_error, mkey, {}, "deserialize threw");
    }
    return false;
  }

  // Bytes we can't read are a miss: count, delete (they would fail every
  // reader), load.
  Read undecodable(const std::string& mkey, const char* why) {
    stats_.bump(stats_.decode_errors);
    if (why) emit(EventType::decode_error, mkey, {}, why);
    StoreStatus st = store_->remove(mkey);
    Read r;
    if (is_failure(st)) {
      cache_error(mkey, st, "delete");
      r.state = State::error;
    }
    return r;
  }

  // ---- encoding and writing
  // -----------------------------------------------------------

  // Serializes value (or an absence when value is null) into
  // bytes/flags/exptime. False when it must not be stored (disabled, too large,
  // serializer threw).
  bool encode_value(const std::string& mkey, const std::optional<Value>& value,
                    std::uint32_t load_us, std::string& bytes, std::uint32_t& flags, Exptime& exp) {
    std::string payload;
    if (value) {
      try {
        payload = serializer_.serialize(*value);
      } catch (const std::exception& ex) {
        emit(EventType::cache_error, mkey, {}, ex.what());
        stats_.bump(stats_.cache_errors);
        return false;
      }
    }
    auto now = detail::unix_ms();
    if (opt_.format == Format::raw) {
      if (!value) return false;
      bytes = std::move(payload);
      flags = 0;
      exp = detail::to_exptime(detail::jittered(opt_.ttl, opt_.ttl_jitter));
    } else if (value) {
      auto ttl = detail::jittered(opt_.ttl, opt_.ttl_jitter);
      envelope::encode(bytes, now + ttl.count(), load_us, payload);
      flags = envelope::value_flags(Serializer::codec);
      // memcached's clock ticks in whole seconds, so an item can vanish up to 1 s early:
      // the slack keeps it until its logical expiry, which is what decides freshness.
      exp = detail::to_exptime(ttl + opt_.max_stale + std::chrono::seconds(1));
    } else {
      if (negative_ttl_.count() <= 0) return false;
      auto ttl = detail::jittered(negative_ttl_, opt_.ttl_jitter);
      envelope::encode(bytes, now + ttl.count(), load_us, {});
      flags = envelope::negative_flags(Serializer::codec);
      exp = detail::to_exptime(ttl + std::chrono::seconds(1));
    }
    if (bytes.size() + mkey.size() > opt_.max_value_bytes) {
      stats_.bump(stats_.oversize);
      emit(EventType::oversize, mkey, {}, "larger than max_value_bytes");
      return false;
    }
    return true;
  }

  bool check_write(const std::string& mkey, StoreStatus st, const char* op) {
    if (st == StoreStatus::ok) return true;
    if (st == StoreStatus::too_large) {
      stats_.bump(stats_.oversize);
      emit(EventType::oversize, mkey, {}, "refused by the server");
    } else if (st == StoreStatus::exists || st == StoreStatus::not_found ||
               st == StoreStatus::not_stored) {
      stats_.bump(stats_.stale_sets_prevented);
      emit(EventType::stale_set_prevented, mkey, {}, to_string(st));
    } else {
      cache_error(mkey, st, op);
    }
    return false;
  }

  bool invalidate_mkey(const std::string& mkey) {
    stats_.bump(stats_.invalidations);
    flights_.forget(mkey);  // loads already running must not serve later callers
    emit(EventType::invalidate, mkey);
    {
      std::lock_guard<std::mutex> lock(throttle_mu_);
      throttled_.erase(mkey);
    }
    StoreStatus st = store_->remove(mkey);
    if (st == StoreStatus::ok || st == StoreStatus::not_found) return true;
    cache_error(mkey, st, "delete");
    return false;
  }

  // Stores a loaded result according to the ticket; releases lease markers.
  // Returns true when the store refused the value because the key was written (deleted,
  // put) after the load began: the value is older than the cache's state.
  bool commit(const std::string& mkey, Ticket& t, const std::optional<Value>& value,
              std::uint32_t load_us) {
    bool overtaken = false;
    if (t.mode == Ticket::store_set || t.mode == Ticket::store_cas) {
      std::string bytes;
      std::uint32_t flags = 0;
      Exptime exp = 0;
      if (encode_value(mkey, value, load_us, bytes, flags, exp)) {
        StoreStatus st = t.mode == Ticket::store_set ? store_->set(mkey, bytes, flags, exp)
                                                     : store_->cas(mkey, bytes, flags, exp, t.cas);
        overtaken = t.mode == Ticket::store_cas &&
                    (st == StoreStatus::exists || st == StoreStatus::not_found);
        if (check_write(mkey, st, t.mode == Ticket::store_set ? "set" : "cas")) t.marker = false;
      }
    }
    release(mkey, t);
    return overtaken;
  }

  // Drops lease markers this ticket still owns, so nobody waits for them.
  void release(const std::string& mkey, Ticket& t) {
    if (t.marker) {
      // Only a marker can be there unless someone wrote meanwhile; a delete is
      // always safe.
      store_->remove(mkey);
      t.marker = false;
    }
    if (!t.side_key.empty()) {
      store_->remove(t.side_key);
      t.side_key.clear();
    }
  }

  // ---- loading
  // ----------------------------------------------------------------------

  struct Loaded {
    std::optional<Value> value;
    std::uint32_t load_us = 0;
  };

  Loaded call_loader(const Key& key, const std::string& mkey) {
    stats_.bump(stats_.loads);
    emit(EventType::load_start, mkey);
    auto t0 = detail::SteadyClock::now();
    Loaded l;
    try {
      l.value = loader_(key);
    } catch (const std::exception& ex) {
      stats_.bump(stats_.load_errors);
      emit(EventType::load_error, mkey, detail::SteadyClock::now() - t0, ex.what());
      throw;
    } catch (...) {
      stats_.bump(stats_.load_errors);
      emit(EventType::load_error, mkey, detail::SteadyClock::now() - t0, "unknown exception");
      throw;
    }
    auto d = detail::SteadyClock::now() - t0;
    emit(EventType::load_end, mkey, d);
    l.load_us = static_cast<std::uint32_t>(std::min<std::int64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(d).count(), 0xFFFFFFFFll));
    return l;
  }

  std::optional<Value> load_uncached(const Key& key, const std::string& mkey) {
    return call_loader(key, mkey).value;
  }

  bool throttled(const std::string& mkey) {
    std::lock_guard<std::mutex> lock(throttle_mu_);
    auto it = throttled_.find(mkey);
    if (it == throttled_.end()) return false;
    if (detail::SteadyClock::now() < it->second) return true;
    throttled_.erase(it);
    return false;
  }
  void throttle(const std::string& mkey) {
    if (opt_.fail_safe_throttle.count() <= 0) return;
    std::lock_guard<std::mutex> lock(throttle_mu_);
    if (throttled_.size() > 100000) throttled_.clear();  // bound memory under key churn
    throttled_[mkey] = detail::SteadyClock::now() + opt_.fail_safe_throttle;
  }

  Read reread(const std::string& mkey) {
    StoreItem item;
    StoreStatus st = store_->get(mkey, item);
    return classify(mkey, st, item);
  }

  // Takes the refresh lease of a present item: on success the ticket may cas against
  // the CAS id that was read.
  StoreStatus take_side_lease(const std::string& mkey, std::uint64_t cas, Ticket& t) {
    std::string side = side_key(mkey);
    StoreStatus st = store_->add(side, detail::lease_token(), envelope::lease_flags(),
                                 static_cast<Exptime>(opt_.lease_ttl.count()));
    if (st == StoreStatus::ok) {
      t.mode = Ticket::store_cas;
      t.cas = cas;
      t.side_key = std::move(side);
    }
    return st;
  }

  // Decides, over the wire, what this caller may do with a load of mkey: store
  // it (holding a lease), load without storing, or use a value that appeared
  // meanwhile.
  Ticket acquire(const std::string& mkey, Read& r, detail::SteadyClock::time_point deadline) {
    Ticket t;
    if (r.state == State::error) return t;  // store failing: load, don't store
    if (!leases_on()) {
      t.mode = Ticket::store_set;
      return t;
    }
    auto backoff = std::chrono::milliseconds(2);
    bool waited = false;
    auto wait_start = detail::SteadyClock::now();
    for (int round = 0; round < 10000; ++round) {
      switch (r.state) {
        case State::fresh:
        case State::negative:
          if (waited) emit(EventType::lease_wait, mkey, detail::SteadyClock::now() - wait_start);
          t.mode = Ticket::resolved;
          t.value = std::move(r.value);
          return t;
        case State::error:
          t.mode = Ticket::no_store;
          return t;
        case State::stale:
        case State::expired: {
          // Present item: refresh under a side lease, then cas against what we
          // read, so an invalidation or put in between wins.
          StoreStatus st = take_side_lease(mkey, r.cas, t);
          if (st == StoreStatus::ok) return t;
          if (st != StoreStatus::not_stored) {
            cache_error(mkey, st, "add lease");
            t.mode = Ticket::no_store;
            return t;
          }
          if (r.state == State::stale) {  // someone else refreshes: serve the stale copy
            t.mode = Ticket::resolved;
            t.value = std::move(r.value);
            t.stale = true;
            return t;
          }
          break;  // wait for the refresher
        }
        case State::absent: {
          std::string token = detail::lease_token();
          StoreStatus st = store_->add(mkey, token, envelope::lease_flags(),
                                       static_cast<Exptime>(opt_.lease_ttl.count()));
          if (st == StoreStatus::ok) {
            StoreItem item;
            StoreStatus g = store_->get(mkey, item);
            if (g == StoreStatus::ok && item.value == token && (item.flags & envelope::lease_bit)) {
              t.mode = Ticket::store_cas;
              t.cas = item.cas;
              t.marker = true;
              return t;
            }
            if (is_failure(g)) {
              cache_error(mkey, g, "gets lease");
              t.mode = Ticket::no_store;
              return t;
            }
            r = classify(mkey, g,
                         item);  // invalidated or overwritten already: look again
            continue;
          }
          if (st != StoreStatus::not_stored) {
            cache_error(mkey, st, "add lease");
            t.mode = Ticket::no_store;
            return t;
          }
          r = reread(mkey);
          continue;
        }
        case State::lease:
          break;
      }
      // Someone else holds the lease: wait for their value, bounded.
      auto now = detail::SteadyClock::now();
      if (!waited) {
        waited = true;
        stats_.bump(stats_.lease_waits);
      }
      if (now >= deadline) {
        stats_.bump(stats_.lease_timeouts);
        emit(EventType::lease_wait, mkey, now - wait_start, "timeout");
        t.mode = Ticket::no_store;
        return t;
      }
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
      std::this_thread::sleep_for(std::min(backoff, remaining + std::chrono::milliseconds(1)));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
      r = reread(mkey);
    }
    return t;
  }

  // The whole miss path for one key, in the calling thread.
  Outcome fill(const Key& key, const std::string& mkey, Read r) {
    if (r.state == State::stale && throttled(mkey)) {
      served_stale(mkey, "throttled");
      return {std::move(r.value), true};
    }
    std::optional<Value> stale;
    if (r.state == State::stale) stale = r.value;
    Ticket t = acquire(mkey, r, detail::SteadyClock::now() + opt_.lease_wait);
    if (t.mode == Ticket::resolved) {
      if (t.stale) served_stale(mkey, "lease_busy");
      return {std::move(t.value), t.stale};
    }
    Loaded l;
    try {
      l = call_loader(key, mkey);
    } catch (...) {
      release(mkey, t);
      if (stale) {
        throttle(mkey);
        served_stale(mkey, "load_error");
        return {std::move(stale), true};
      }
      throw;
    }
    bool overtaken = commit(mkey, t, l.value, l.load_us);
    return {std::move(l.value), false, overtaken};
  }

  // Runs fill as the leader of a flight, publishing its result.
  void lead(const Key& key, const std::string& mkey, Read r,
            const std::shared_ptr<detail::Flight<Value>>& f, bool registered) {
    try {
      Outcome o = fill(key, mkey, std::move(r));
      if (registered) flights_.leave(mkey, f);
      f->publish(std::move(o.value), o.stale, o.overtaken);
    } catch (...) {
      if (registered) flights_.leave(mkey, f);
      f->fail(std::current_exception());
    }
  }

  // Miss path with single-flight and loader timeouts.
  std::optional<Value> load_path(const Key& key, const std::string& mkey, Read r,
                                 bool may_retry = true) {
    std::shared_ptr<detail::Flight<Value>> f;
    bool leader = true;
    if (opt_.single_flight) {
      auto j = flights_.join(mkey);
      f = std::move(j.first);
      leader = j.second;
    }
    bool timed = opt_.soft_timeout.count() > 0 || opt_.hard_timeout.count() > 0;
    std::optional<Value> stale;
    if (r.state == State::stale) stale = r.value;
    auto start = detail::SteadyClock::now();
    if (leader) {
      if (!f) f = std::make_shared<detail::Flight<Value>>();
      bool started = false;
      if (timed) {
        try {
          start_background([this, key, mkey, r, f]() mutable {
            lead(key, mkey, std::move(r), f, opt_.single_flight);
          });
          started = true;
        } catch (const std::system_error&) {
          // No thread to be had: load in this one, without the timeouts.
        }
      }
      if (!started) lead(key, mkey, std::move(r), f, opt_.single_flight);
    } else {
      stats_.bump(stats_.coalesced);
    }
    std::optional<Value> v = await(mkey, *f, stale, start);
    if (!leader && may_retry && overtaken(*f)) return retry(key, mkey);
    return v;
  }

  static bool overtaken(detail::Flight<Value>& f) {
    std::lock_guard<std::mutex> lock(f.mu);
    return f.done && f.overtaken;
  }

  // A shared load turned out older than a write to the key (this caller may have joined
  // after that write): look again instead of returning it.
  std::optional<Value> retry(const Key& key, const std::string& mkey) {
    Read again = reread(mkey);
    if (again.state == State::fresh) return std::move(again.value);
    if (again.state == State::negative) return std::nullopt;
    return load_path(key, mkey, std::move(again), false);
  }

  std::optional<Value> await(const std::string& mkey, detail::Flight<Value>& f,
                             std::optional<Value>& stale, detail::SteadyClock::time_point start) {
    if (opt_.soft_timeout.count() > 0 && stale) {
      if (!f.wait_until(start + opt_.soft_timeout)) {
        stats_.bump(stats_.load_timeouts);
        served_stale(mkey, "soft_timeout");
        return std::move(stale);
      }
    }
    if (opt_.hard_timeout.count() > 0) {
      if (!f.wait_until(start + opt_.hard_timeout)) {
        stats_.bump(stats_.load_timeouts);
        if (stale) {
          served_stale(mkey, "hard_timeout");
          return std::move(stale);
        }
        throw TimeoutError("cacheaside: loader for '" + mkey + "' ran past hard_timeout");
      }
    }
    f.wait();
    std::lock_guard<std::mutex> lock(f.mu);
    if (f.error) std::rethrow_exception(f.error);
    return f.value;
  }

  template <class Fn>
  void start_background(Fn&& fn) {
    {
      std::lock_guard<std::mutex> lock(bg_mu_);
      ++bg_count_;
    }
    try {
      std::thread([this, fn = std::forward<Fn>(fn)]() mutable {
        fn();
        std::lock_guard<std::mutex> lock(bg_mu_);
        --bg_count_;
        bg_cv_.notify_all();
      }).detach();
    } catch (...) {
      std::lock_guard<std::mutex> lock(bg_mu_);
      --bg_count_;
      throw;
    }
  }

  // A hit that XFetch picked to refresh early: one caller reloads (others keep
  // hitting); if anything goes wrong the still-fresh value is returned.
  std::optional<Value> refresh_early(const Key& key, const std::string& mkey, Read r) {
    std::shared_ptr<detail::Flight<Value>> f;
    if (opt_.single_flight) {
      auto j = flights_.join(mkey);
      if (!j.second) return std::move(r.value);  // someone here is already loading it
      f = std::move(j.first);
    } else {
      f = std::make_shared<detail::Flight<Value>>();
    }
    stats_.bump(stats_.early_refreshes);
    emit(EventType::early_refresh, mkey);
    std::optional<Value> current = r.value;
    std::optional<Value> result = current;
    Ticket t;
    if (leases_on()) {
      take_side_lease(mkey, r.cas, t);
    } else {
      t.mode = Ticket::store_set;
    }
    if (t.mode != Ticket::no_store) {
      try {
        Loaded l = call_loader(key, mkey);
        commit(mkey, t, l.value, l.load_us);
        result = std::move(l.value);
      } catch (...) {
        release(mkey, t);  // keep serving the fresh value
      }
    }
    if (opt_.single_flight) flights_.leave(mkey, f);
    f->publish(result, false);
    return result;
  }

  // get_many's misses through the bulk loader: leases per key, one loader call.
  void load_bulk(const std::vector<Key>& keys, const std::vector<std::size_t>& first,
                 const std::vector<std::string>& ukeys, const std::vector<std::size_t>& pending,
                 std::vector<Read>& reads, std::vector<std::optional<Value>>& uvals) {
    struct Job {
      std::size_t u;
      std::shared_ptr<detail::Flight<Value>> flight;
      bool leader = true;
      Ticket ticket;
      std::optional<Value> stale;
      bool overtaken = false;
    };
    std::vector<Job> jobs;
    jobs.reserve(pending.size());
    auto deadline = detail::SteadyClock::now() + opt_.lease_wait;
    std::vector<Key> to_load;
    std::vector<std::size_t> load_jobs;
    for (std::size_t p = 0; p < pending.size(); ++p) {
      Job j;
      j.u = pending[p];
      const std::string& mk = ukeys[j.u];
      if (opt_.single_flight) {
        auto jn = flights_.join(mk);
        j.flight = std::move(jn.first);
        j.leader = jn.second;
      } else {
        j.flight = std::make_shared<detail::Flight<Value>>();
      }
      if (!j.leader) {
        stats_.bump(stats_.coalesced);
        if (reads[p].state == State::stale) j.stale = reads[p].value;
        jobs.push_back(std::move(j));
        continue;
      }
      if (reads[p].state == State::stale) {
        j.stale = reads[p].value;
        if (throttled(mk)) {
          served_stale(mk, "throttled");
          j.ticket.mode = Ticket::resolved;
          j.ticket.value = j.stale;
          j.ticket.stale = true;
          jobs.push_back(std::move(j));
          continue;
        }
      }
      j.ticket = acquire(mk, reads[p], deadline);
      if (j.ticket.mode == Ticket::resolved) {
        if (j.ticket.stale) served_stale(mk, "lease_busy");
      } else {
        to_load.push_back(keys[first[j.u]]);
        load_jobs.push_back(jobs.size());
      }
      jobs.push_back(std::move(j));
    }
    std::exception_ptr error;
    bool unrecovered = false;  // a key failed with no stale copy to fall back on
    if (!to_load.empty()) {
      std::vector<std::optional<Value>> loaded;
      auto t0 = detail::SteadyClock::now();
      stats_.bump(stats_.loads, to_load.size());
      for (std::size_t idx : load_jobs) emit(EventType::load_start, ukeys[jobs[idx].u]);
      try {
        loaded = bulk_loader_(to_load);
        if (loaded.size() != to_load.size())
          throw Error("cacheaside: bulk loader returned " + std::to_string(loaded.size()) +
                      " values for " + std::to_string(to_load.size()) + " keys");
      } catch (...) {
        error = std::current_exception();
        stats_.bump(stats_.load_errors);
      }
      auto d = detail::SteadyClock::now() - t0;
      auto load_us = static_cast<std::uint32_t>(std::min<std::int64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(d).count(), 0xFFFFFFFFll));
      for (std::size_t n = 0; n < load_jobs.size(); ++n) {
        Job& j = jobs[load_jobs[n]];
        const std::string& mk = ukeys[j.u];
        if (error) {
          emit(EventType::load_error, mk, d, "bulk loader failed");
          release(mk, j.ticket);
          if (j.stale) {
            throttle(mk);
            served_stale(mk, "load_error");
            j.ticket.mode = Ticket::resolved;
            j.ticket.value = j.stale;
            j.ticket.stale = true;
          } else {
            unrecovered = true;
          }
          continue;
        }
        emit(EventType::load_end, mk, d);
        j.overtaken = commit(mk, j.ticket, loaded[n], load_us);
        j.ticket.mode = Ticket::resolved;
        j.ticket.value = std::move(loaded[n]);
      }
    }
    // Publish what we led, then wait for what others led.
    for (Job& j : jobs) {
      if (!j.leader) continue;
      const std::string& mk = ukeys[j.u];
      if (opt_.single_flight) flights_.leave(mk, j.flight);
      if (j.ticket.mode == Ticket::resolved) {
        uvals[j.u] = j.ticket.value;
        j.flight->publish(j.ticket.value, j.ticket.stale, j.overtaken);
      } else {
        j.flight->fail(error);
      }
    }
    for (Job& j : jobs) {
      if (j.leader) continue;
      uvals[j.u] = await(ukeys[j.u], *j.flight, j.stale, detail::SteadyClock::now());
      if (overtaken(*j.flight)) uvals[j.u] = retry(keys[first[j.u]], ukeys[j.u]);
    }
    if (unrecovered) std::rethrow_exception(error);
  }

  std::shared_ptr<Store> store_;
  Loader loader_;
  BulkLoader bulk_loader_;
  Options opt_;
  Serializer serializer_;
  std::chrono::milliseconds negative_ttl_{0};
  mutable detail::AtomicStats stats_;
  detail::FlightTable<Value> flights_;

  std::mutex throttle_mu_;
  std::unordered_map<std::string, detail::SteadyClock::time_point> throttled_;

  std::string group_key_;
  std::mutex group_mu_;
  std::uint64_t group_gen_ = 0;
  detail::SteadyClock::time_point group_read_{};
  bool group_valid_ = false;

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  int bg_count_ = 0;
};

}  // namespace cacheaside
