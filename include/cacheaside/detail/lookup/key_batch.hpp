// The distinct keys of a get_many, and the way back to input order (internal).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cacheaside::detail {

/// Deduplicates memcached keys with a small open-addressing table: no
/// allocation per key.
class KeyBatch {
 public:
  explicit KeyBatch(std::size_t n) : table_(capacity(n), empty) {
    slot_.reserve(n);
    first_.reserve(n);
    uses_.reserve(n);
    unique_.reserve(n);
  }

  /// Adds the next input key; true when it is a new distinct key.
  bool add(std::string mkey) {
    const std::size_t mask = table_.size() - 1;
    std::size_t h = std::hash<std::string_view>{}(mkey)&mask;
    while (table_[h] != empty && unique_[table_[h]] != mkey) h = (h + 1) & mask;
    bool fresh = table_[h] == empty;
    if (fresh) {
      table_[h] = unique_.size();
      first_.push_back(slot_.size());
      uses_.push_back(0);
      unique_.push_back(std::move(mkey));
    }
    slot_.push_back(table_[h]);
    ++uses_[table_[h]];
    return fresh;
  }

  /// The distinct keys, in order of first appearance.
  const std::vector<std::string>& unique() const { return unique_; }
  /// The input index where distinct key u first appeared.
  std::size_t first(std::size_t u) const { return first_[u]; }

  /// One value per distinct key to one per input key: each value moves to its
  /// last use, copies go to the earlier duplicates.
  template <class T>
  std::vector<std::optional<T>> spread(std::vector<std::optional<T>> vals) {
    std::vector<std::optional<T>> out(slot_.size());
    for (std::size_t i = 0; i < slot_.size(); ++i) {
      std::size_t u = slot_[i];
      if (--uses_[u] == 0)
        out[i] = std::move(vals[u]);
      else
        out[i] = vals[u];
    }
    return out;
  }

 private:
  static constexpr std::size_t empty = static_cast<std::size_t>(-1);
  static std::size_t capacity(std::size_t n) {
    std::size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
  }

  std::vector<std::size_t> table_, slot_, first_, uses_;
  std::vector<std::string> unique_;
};

}  // namespace cacheaside::detail
