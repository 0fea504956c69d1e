// Leases this process took and could not give back (internal).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../clock.hpp"

namespace cacheaside::detail {

/// A lease whose release failed (the store stopped answering between taking it
/// and giving it back), or whose taking went unanswered (the request may still
/// land: a frozen server runs it when it wakes), stays under its key for
/// lease_ttl, and every caller of the key would wait lease_wait for a load
/// nobody runs. This process knows the marker is dead: a caller that finds the
/// key busy deletes it instead of waiting. Only the very marker counts: classic
/// knows its value; meta knows its CAS id, or, for a lease read that went
/// unanswered, only that its placeholder (if it made one) is newer than every
/// CAS id read before it was sent: such a placeholder may be ours or another
/// caller's (`maybe`: the caller loads without waiting or deleting). A win
/// memcached hands out under the key proves older placeholders gone. Entries are
/// forgotten after lease_ttl (the marker is gone by then); bounded.
class OrphanedLeases {
 public:
  /// Whether a busy marker is one this process abandoned.
  enum class Match {
    none,   ///< not one of ours
    ours,   ///< ours: nobody loads under it (told once)
    maybe,  ///< it may be ours (a lease read of ours went unanswered): nobody can tell
  };

  OrphanedLeases(std::chrono::seconds lease_ttl, std::shared_ptr<Clock> clock)
      : ttl_(lease_ttl), clock_(std::move(clock)) {}

  /// Classic: key's marker, holding `token` (empty: unknown, any marker), may be
  /// left behind.
  void add(std::string_view key, std::string_view token = {}) {
    with_entry(key, [&](Entry& e) {
      if (token.empty() || e.tokens.size() >= max_tokens) {
        e.any = true;  // unknown, or too many to tell apart
      } else {
        e.tokens.emplace_back(token);
      }
    });
  }

  /// Meta: key's placeholder with CAS id `cas` was left behind.
  void add_cas(std::string_view key, std::uint64_t cas) {
    with_entry(key, [&](Entry& e) {
      if (e.cas_ids.size() < max_tokens) e.cas_ids.push_back(cas);
    });
  }

  /// Meta: a lease read of ours, sent once `floor` was the highest CAS id read,
  /// went unanswered: a placeholder it made has a higher one.
  void add_after(std::string_view key, std::uint64_t floor) {
    with_entry(key, [&](Entry& e) {
      e.after = e.after_set ? std::min(e.after, floor) : floor;
      e.after_set = true;
    });
  }

  /// Key's busy marker, holding `marker` (meta: CAS id `cas`). A reply may be
  /// older than an entry: a marker that is not ours leaves the entry as it is.
  Match match(std::string_view key, std::string_view marker = {}, std::uint64_t cas = 0) {
    if (!any_) return Match::none;  // the common case: one relaxed read, no lock
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(std::string(key));
    if (it == keys_.end()) return Match::none;
    Entry& e = it->second;
    if (clock_->now() >= e.until) {
      erase(it);
      return Match::none;
    }
    bool known = cas != 0 && std::find(e.cas_ids.begin(), e.cas_ids.end(), cas) != e.cas_ids.end();
    if (e.any || known || std::find(e.tokens.begin(), e.tokens.end(), marker) != e.tokens.end()) {
      erase(it);
      return Match::ours;
    }
    return e.after_set && cas > e.after ? Match::maybe : Match::none;
  }

  /// True (once) when key's busy marker, holding `marker`, is one this process
  /// abandoned.
  bool take(std::string_view key, std::string_view marker = {}) {
    return match(key, marker) == Match::ours;
  }

  /// Meta: memcached handed out a new placeholder with CAS id `won` under key: no
  /// placeholder older than it is left (a win is handed out only where none is).
  void forget_before(std::string_view key, std::uint64_t won) {
    if (!any_) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(std::string(key));
    if (it == keys_.end()) return;
    Entry& e = it->second;
    e.cas_ids.erase(std::remove_if(e.cas_ids.begin(), e.cas_ids.end(),
                                   [won](std::uint64_t c) { return c < won; }),
                    e.cas_ids.end());
    if (e.after_set && e.after < won) e.after = won;
    if (e.cas_ids.empty() && !e.any && e.tokens.empty() && !e.after_set) erase(it);
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_.size();
  }

  static constexpr std::size_t max_entries = 10000;
  static constexpr std::size_t max_tokens = 8;  // markers of one key left at once

 private:
  struct Entry {
    Clock::time_point until{};
    std::vector<std::string> tokens;     // classic: the markers' values
    std::vector<std::uint64_t> cas_ids;  // meta: the placeholders' CAS ids
    bool any = false;                    // any marker under the key
    bool after_set = false;              // meta: a placeholder newer than `after` may be ours
    std::uint64_t after = 0;
  };
  using Map = std::unordered_map<std::string, Entry>;

  template <class Fill>
  void with_entry(std::string_view key, Fill fill) {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = clock_->now();
    if (keys_.size() >= max_entries) prune(now);
    if (keys_.size() >= max_entries) return;  // the wait stays bounded by lease_wait
    Entry& e = keys_[std::string(key)];
    if (e.until <= now) e = Entry();
    e.until = now + ttl_;
    fill(e);
    any_ = true;
  }

  void erase(Map::iterator it) {
    keys_.erase(it);
    any_ = !keys_.empty();
  }

  void prune(Clock::time_point now) {
    for (auto it = keys_.begin(); it != keys_.end();)
      it = now >= it->second.until ? keys_.erase(it) : std::next(it);
    any_ = !keys_.empty();
  }

  std::chrono::seconds ttl_;
  std::shared_ptr<Clock> clock_;  // the cache's: the simulation runs it on its own
  std::mutex mu_;
  Map keys_;
  std::atomic<bool> any_{false};
};

}  // namespace cacheaside::detail
