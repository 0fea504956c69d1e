// The in-process table of a near cache: decoded values by memcached key,
// bounded, sharded (no global lock on a hit), segmented LRU per shard (internal).
//
// Segmented LRU: a new entry starts in the probation segment; a hit moves it
// to the protected one (80 % of the shard). A scan of keys read once only
// churns probation, so keys that are read again stay.
//
// Epochs: every drop bumps its shard's epoch, and an insert carries the epoch
// read before the value was read from memcached; an insert whose shard moved
// on meanwhile is refused, so a value read before an invalidation never lands
// after it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>

namespace cacheaside::detail {

template <class Value>
class NearCache {
 public:
  using Ptr = std::shared_ptr<const std::optional<Value>>;
  struct Ticket {
    std::size_t shard = 0;
    std::uint64_t epoch = 0;
  };

  explicit NearCache(std::size_t capacity) {
    std::size_t n = 1;
    while (n < 16 && n * 2 * 64 <= capacity) n *= 2;  // at least 64 entries a shard
    n_ = n;
    shards_ = std::make_unique<Shard[]>(n);
    for (std::size_t i = 0; i < n; ++i) {
      Shard& s = shards_[i];
      s.capacity = std::max<std::size_t>(1, capacity / n + (i < capacity % n ? 1 : 0));
      s.protected_capacity = s.capacity * 4 / 5;
    }
  }

  NearCache(const NearCache&) = delete;
  NearCache& operator=(const NearCache&) = delete;

  /// Taken before reading memcached; `insert` needs it.
  Ticket ticket(const std::string& key) const {
    std::size_t i = shard_of(key);
    return {i, shards_[i].epoch.load(std::memory_order_acquire)};
  }

  /// Copies the entry into out, unless absent or expired (now and expiry in
  /// unix ms). A hit on a protected entry takes the shard's lock shared and
  /// writes nothing shared: readers of one hot key do not serialize. (The
  /// protected segment is therefore ordered by promotion, not by last use: a
  /// demoted key that is still read is promoted again at its next hit.)
  bool find(const std::string& key, std::int64_t now_ms, std::optional<Value>& out) {
    Shard& s = shards_[shard_of(key)];
    {
      std::shared_lock<std::shared_mutex> lock(s.mu);
      auto it = s.index.find(key);
      if (it == s.index.end() || it->second->expires_ms <= now_ms) return false;
      if (it->second->hot) {
        out = *it->second->value;
        return true;
      }
    }
    std::unique_lock<std::shared_mutex> lock(s.mu);  // second touch: promote
    auto it = s.index.find(key);
    if (it == s.index.end() || it->second->expires_ms <= now_ms) return false;
    auto node = it->second;
    if (!node->hot) {
      node->hot = true;
      s.hot.splice(s.hot.begin(), s.probation, node);
      if (s.hot.size() > s.protected_capacity) {
        auto last = std::prev(s.hot.end());
        last->hot = false;
        s.probation.splice(s.probation.begin(), s.hot, last);
      }
    }
    out = *node->value;
    return true;
  }

  /// Adds or replaces key, unless its shard was dropped since t was taken.
  /// Returns the number of entries evicted to make room.
  std::size_t insert(const std::string& key, Ptr value, std::int64_t expires_ms, Ticket t) {
    Shard& s = shards_[t.shard];
    std::unique_lock<std::shared_mutex> lock(s.mu);
    if (s.epoch.load(std::memory_order_relaxed) != t.epoch) return 0;
    auto it = s.index.find(key);
    if (it != s.index.end()) {
      it->second->value = std::move(value);
      it->second->expires_ms = expires_ms;
      return 0;
    }
    s.probation.push_front(Node{key, std::move(value), expires_ms, false});
    s.index.emplace(s.probation.front().key, s.probation.begin());
    std::size_t evicted = 0;
    while (s.index.size() > s.capacity) {
      auto& from = s.probation.empty() ? s.hot : s.probation;
      s.index.erase(from.back().key);
      from.pop_back();
      ++evicted;
    }
    return evicted;
  }

  /// Removes key, and refuses inserts whose tickets predate this.
  void drop(const std::string& key) {
    Shard& s = shards_[shard_of(key)];
    std::unique_lock<std::shared_mutex> lock(s.mu);
    s.epoch.fetch_add(1, std::memory_order_release);
    auto it = s.index.find(key);
    if (it != s.index.end()) s.erase(it);
  }

  /// Removes everything (same rule for inserts).
  void drop_all() {
    for (std::size_t i = 0; i < n_; ++i) {
      Shard& s = shards_[i];
      std::unique_lock<std::shared_mutex> lock(s.mu);
      s.epoch.fetch_add(1, std::memory_order_release);
      s.index.clear();
      s.probation.clear();
      s.hot.clear();
    }
  }

  std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < n_; ++i) {
      std::shared_lock<std::shared_mutex> lock(shards_[i].mu);
      n += shards_[i].index.size();
    }
    return n;
  }

 private:
  struct Node {
    std::string key;
    Ptr value;
    std::int64_t expires_ms;
    bool hot;  // in the protected segment
  };
  using List = std::list<Node>;
  struct Shard {
    mutable std::shared_mutex mu;
    std::atomic<std::uint64_t> epoch{0};
    List probation, hot;
    std::unordered_map<std::string, typename List::iterator> index;
    std::size_t capacity = 0, protected_capacity = 0;

    void erase(typename std::unordered_map<std::string, typename List::iterator>::iterator it) {
      auto node = it->second;
      index.erase(it);
      (node->hot ? hot : probation).erase(node);
    }
  };

  std::size_t shard_of(const std::string& key) const {
    return std::hash<std::string>()(key) & (n_ - 1);
  }

  std::unique_ptr<Shard[]> shards_;
  std::size_t n_ = 1;
};

}  // namespace cacheaside::detail
