// cacheaside: the Store interface and InMemoryStore (standard library only).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "clock.hpp"
#include "exptime.hpp"

namespace cacheaside {

/// Result of a store operation. Stores report, they never throw for I/O
/// failures.
enum class StoreStatus {
  ok,
  not_found,    ///< no such key (get, remove, cas on a deleted key)
  exists,       ///< cas: the item changed since it was read
  not_stored,   ///< add: the key already exists
  too_large,    ///< the value exceeds the server's item size limit
  timeout,      ///< the server did not answer in time
  unavailable,  ///< connection refused, server marked dead, no connection free
                ///< in the pool
  error,        ///< any other failure (protocol, bad key, ...)
};

/// Name of a status, e.g. "timeout".
inline const char* to_string(StoreStatus s) {
  static constexpr const char* names[] = {"ok",        "not_found", "exists",      "not_stored",
                                          "too_large", "timeout",   "unavailable", "error"};
  auto i = static_cast<std::size_t>(s);
  return i < sizeof names / sizeof names[0] ? names[i] : "unknown";
}

/// True for statuses that mean the store failed (as opposed to an answer about
/// the key).
inline bool is_failure(StoreStatus s) {
  return s == StoreStatus::timeout || s == StoreStatus::unavailable || s == StoreStatus::error;
}

/// A stored item as read back.
struct StoreItem {
  std::string value;        ///< the item's bytes
  std::uint32_t flags = 0;  ///< the item's 32-bit client flags
  std::uint64_t cas = 0;    ///< CAS id (0 if the store has none)
};

/// The storage a CacheAside talks to. Implementations must be thread-safe; keys
/// given to them are already safe memcached keys (printable, no spaces, <= 250
/// bytes).
class Store {
 public:
  virtual ~Store() = default;
  /// Reads one key: ok (item filled, with its CAS id), not_found, or a failure.
  virtual StoreStatus get(std::string_view key, StoreItem& item) = 0;
  /// Reads several distinct keys in one round trip. Resizes `items` and `found`
  /// to keys.size(); found[i] != 0 when keys[i] was there. A failure leaves
  /// found all 0.
  virtual StoreStatus get_multi(const std::vector<std::string>& keys, std::vector<StoreItem>& items,
                                std::vector<char>& found) = 0;
  /// Stores unconditionally.
  virtual StoreStatus set(std::string_view key, std::string_view value, std::uint32_t flags,
                          Exptime exptime) = 0;
  /// Stores only if absent; not_stored otherwise.
  virtual StoreStatus add(std::string_view key, std::string_view value, std::uint32_t flags,
                          Exptime exptime) = 0;
  /// Stores only if the item's CAS id is still `cas`; exists / not_found
  /// otherwise.
  virtual StoreStatus cas(std::string_view key, std::string_view value, std::uint32_t flags,
                          Exptime exptime, std::uint64_t cas) = 0;
  /// Deletes: ok or not_found.
  virtual StoreStatus remove(std::string_view key) = 0;
  /// Adds `delta` to a decimal counter, creating it as `initial` when absent;
  /// `value` gets the new value.
  virtual StoreStatus incr(std::string_view key, std::uint64_t delta, std::uint64_t initial,
                           Exptime exptime, std::uint64_t& value) = 0;
};

/// A Store in process memory with memcached's semantics (CAS ids, expiry in
/// whole seconds, 1 MiB items). For unit tests and for running without a
/// server. Thread-safe.
class InMemoryStore : public Store {
 public:
  /// `max_item_bytes`: values larger than this are refused with too_large.
  /// `clock`: what expiry is measured against (share a `ManualClock` with the
  /// cache to test expiry without sleeping).
  explicit InMemoryStore(std::size_t max_item_bytes = 1024 * 1024,
                         std::shared_ptr<Clock> clock = SystemClock::instance())
      : max_item_bytes_(max_item_bytes),
        clock_(clock ? std::move(clock) : SystemClock::instance()) {}

  StoreStatus get(std::string_view key, StoreItem& item) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto* e = find_live(key);
    if (!e) return StoreStatus::not_found;
    item.value.assign(e->value);
    item.flags = e->flags;
    item.cas = e->cas;
    return StoreStatus::ok;
  }

  StoreStatus get_multi(const std::vector<std::string>& keys, std::vector<StoreItem>& items,
                        std::vector<char>& found) override {
    items.resize(keys.size());
    found.assign(keys.size(), 0);
    for (std::size_t i = 0; i < keys.size(); ++i)
      found[i] = get(keys[i], items[i]) == StoreStatus::ok ? 1 : 0;
    return StoreStatus::ok;
  }

  StoreStatus set(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    if (value.size() > max_item_bytes_) return StoreStatus::too_large;
    std::lock_guard<std::mutex> lock(mu_);
    put_locked(key, value, flags, exptime);
    return StoreStatus::ok;
  }

  StoreStatus add(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    if (value.size() > max_item_bytes_) return StoreStatus::too_large;
    std::lock_guard<std::mutex> lock(mu_);
    if (find_live(key)) return StoreStatus::not_stored;
    put_locked(key, value, flags, exptime);
    return StoreStatus::ok;
  }

  StoreStatus cas(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime, std::uint64_t cas_id) override {
    if (value.size() > max_item_bytes_) return StoreStatus::too_large;
    std::lock_guard<std::mutex> lock(mu_);
    auto* e = find_live(key);
    if (!e) return StoreStatus::not_found;
    if (e->cas != cas_id) return StoreStatus::exists;
    put_locked(key, value, flags, exptime);
    return StoreStatus::ok;
  }

  StoreStatus remove(std::string_view key) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!find_live(key)) return StoreStatus::not_found;
    items_.erase(std::string(key));
    return StoreStatus::ok;
  }

  StoreStatus incr(std::string_view key, std::uint64_t delta, std::uint64_t initial,
                   Exptime exptime, std::uint64_t& value) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto* e = find_live(key);
    if (!e) {
      value = initial;
      put_locked(key, std::to_string(initial), 0, exptime);
      return StoreStatus::ok;
    }
    std::uint64_t cur = 0;
    for (char c : e->value) {
      if (c < '0' || c > '9') return StoreStatus::error;
      cur = cur * 10 + static_cast<std::uint64_t>(c - '0');
    }
    value = cur + delta;
    e->value = std::to_string(value);
    e->cas = ++next_cas_;
    return StoreStatus::ok;
  }

  /// Holds at most n items (0: no limit). Storing a new key when full drops the
  /// expired items, then the least recently written ones down to 90 % of n, as
  /// memcached evicts under memory pressure.
  void set_max_items(std::size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    max_items_ = n;
  }

  /// Removes everything.
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    items_.clear();
  }

  /// Number of live items.
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    std::size_t n = 0;
    for (auto& kv : items_)
      if (!expired(kv.second)) ++n;
    return n;
  }

 private:
  struct Entry {
    std::string value;
    std::uint32_t flags = 0;
    std::uint64_t cas = 0;
    std::int64_t expires_ms = 0;  // unix ms; 0 = never
  };

  bool expired(const Entry& e) const {
    return e.expires_ms != 0 && clock_->unix_ms() >= e.expires_ms;
  }

  Entry* find_live(std::string_view key) {
    auto it = items_.find(std::string(key));
    if (it == items_.end()) return nullptr;
    if (expired(it->second)) {
      items_.erase(it);
      return nullptr;
    }
    return &it->second;
  }

  void put_locked(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) {
    std::string k(key);
    if (max_items_ && items_.size() >= max_items_ && !items_.count(k)) evict();
    Entry& e = items_[std::move(k)];
    e.value.assign(value.data(), value.size());
    e.flags = flags;
    e.cas = ++next_cas_;
    e.expires_ms = detail::expiry_unix_ms(exptime, clock_->unix_ms());
  }

  // Drops expired items, then the oldest writes (CAS ids grow with every write) until
  // 90 % full: a scan per tenth of the capacity, not per store.
  void evict() {
    std::vector<std::pair<std::uint64_t, std::string>> live;
    live.reserve(items_.size());
    for (auto it = items_.begin(); it != items_.end();) {
      if (expired(it->second)) {
        it = items_.erase(it);
      } else {
        live.emplace_back(it->second.cas, it->first);
        ++it;
      }
    }
    std::size_t target = max_items_ - max_items_ / 10;
    if (live.size() <= target) return;
    auto cut = live.begin() + static_cast<std::ptrdiff_t>(live.size() - target);
    std::nth_element(live.begin(), cut, live.end());
    for (auto it = live.begin(); it != cut; ++it) items_.erase(it->second);
  }

  std::mutex mu_;
  std::unordered_map<std::string, Entry> items_;
  std::size_t max_items_ = 0;
  std::uint64_t next_cas_ = 0;
  std::size_t max_item_bytes_;
  std::shared_ptr<Clock> clock_;
};

}  // namespace cacheaside
