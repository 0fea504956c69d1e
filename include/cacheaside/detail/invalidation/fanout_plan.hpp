// A batch of changes as the distinct keys they make wrong in one cache
// (internal): what InvalidationFanout and AsyncInvalidationFanout share.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../key.hpp"

namespace cacheaside::detail {

/// Each distinct key once, with the changes that named it.
template <class Key>
struct FanoutPlan {
  std::vector<Key> keys;
  std::vector<std::vector<std::size_t>> changes;  // aligned with keys

  void add(Key key, std::size_t change) {
    std::string text(key_traits<Key>::to_string(key));
    auto [it, fresh] = index_.emplace(std::move(text), keys.size());
    if (fresh) {
      keys.push_back(std::move(key));
      changes.emplace_back();
    }
    changes[it->second].push_back(change);
  }

 private:
  std::unordered_map<std::string, std::size_t> index_;
};

/// keys_of(change) gives a Key, an std::optional<Key> or a std::vector<Key>
/// (none: the change leaves this cache alone).
template <class Key, class Change, class KeysOf>
FanoutPlan<Key> plan_fanout(const std::vector<Change>& changes, const KeysOf& keys_of) {
  FanoutPlan<Key> plan;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    auto keys = keys_of(changes[i]);
    using Got = decltype(keys);
    if constexpr (std::is_same_v<Got, std::vector<Key>>) {
      for (Key& k : keys) plan.add(std::move(k), i);
    } else if constexpr (std::is_same_v<Got, std::optional<Key>>) {
      if (keys) plan.add(std::move(*keys), i);
    } else {
      static_assert(std::is_convertible_v<Got, Key>,
                    "keys_of returns a Key, an std::optional<Key> or an std::vector<Key>");
      plan.add(Key(std::move(keys)), i);
    }
  }
  return plan;
}

}  // namespace cacheaside::detail
