// cacheaside: InvalidationFanout<Change>, one change in the data as the keys it
// makes wrong in several caches.
#pragma once

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

#include "cache_aside.hpp"
#include "detail/invalidation/fanout_plan.hpp"

namespace cacheaside {

/// Invalidates, for a batch of changes to the data (rows a relay read from a
/// database's outbox or change log), every key of every cache that each change
/// made wrong: a user's row as `user_<id>` in one cache and `users_all` in another.
///
///   cacheaside::InvalidationFanout<long long> on_user(by_id, [](long long id) { return id; });
///   on_user.add(lists, [](long long) { return std::string("users_all"); });
///   std::vector<bool> done = on_user.apply({5, 7});  // users_all deleted once
///
/// Thread-safe once built (apply() only reads the table of caches).
template <class Change>
class InvalidationFanout {
 public:
  InvalidationFanout() = default;
  /// add(cache, keys_of) at once.
  template <class K, class V, class S, class KeysOf>
  InvalidationFanout(CacheAside<K, V, S>& cache, KeysOf keys_of) {
    add(cache, std::move(keys_of));
  }

  /// Each change invalidates, in cache, the keys keys_of(change) returns: a Key,
  /// an std::optional<Key> or an std::vector<Key> (none: not this cache). The
  /// cache must outlive this object.
  template <class K, class V, class S, class KeysOf>
  InvalidationFanout& add(CacheAside<K, V, S>& cache, KeysOf keys_of) {
    targets_.push_back([&cache, keys_of = std::move(keys_of)](const std::vector<Change>& changes,
                                                              std::vector<bool>& confirmed) {
      auto plan = detail::plan_fanout<K>(changes, keys_of);
      for (std::size_t i = 0; i < plan.keys.size(); ++i)
        if (!cache.invalidate(plan.keys[i]))
          for (std::size_t c : plan.changes[i]) confirmed[c] = false;
    });
    return *this;
  }

  /// Invalidates every key of every change, each distinct key once per cache, as
  /// CacheAside::invalidate does. Element i is true when memcached confirmed every
  /// key of changes[i]; the others are pending in their caches (retried, spooled),
  /// and a relay keeps those changes to apply again.
  std::vector<bool> apply(const std::vector<Change>& changes) const {
    std::vector<bool> confirmed(changes.size(), true);
    for (const auto& t : targets_) t(changes, confirmed);
    return confirmed;
  }

 private:
  std::vector<std::function<void(const std::vector<Change>&, std::vector<bool>&)>> targets_;
};

}  // namespace cacheaside
