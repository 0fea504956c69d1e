// Leases this process took and could not give back (internal).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "../../clock.hpp"

namespace cacheaside::detail {

/// A lease whose release failed (the store stopped answering between taking it
/// and giving it back), or whose taking went unanswered (the request may still
/// land: a frozen server runs it when it wakes), stays under its key for
/// lease_ttl, and every caller of the key would wait lease_wait for a load
/// nobody runs. This process knows the marker is dead: a caller that finds the
/// key busy deletes it instead of waiting. With the marker's token remembered,
/// only that marker counts. Entries are forgotten after lease_ttl (the marker is
/// gone by then); bounded.
class OrphanedLeases {
 public:
  OrphanedLeases(std::chrono::seconds lease_ttl, std::shared_ptr<Clock> clock)
      : ttl_(lease_ttl), clock_(std::move(clock)) {}

  /// Key's lease may be left behind: its release failed, or the request taking
  /// it went unanswered. `token`: the marker's value, when it has one.
  void add(std::string_view key, std::string_view token = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = clock_->now();
    if (keys_.size() >= max_entries) prune(now);
    if (keys_.size() >= max_entries) return;  // the wait stays bounded by lease_wait
    keys_[std::string(key)] = Entry{now + ttl_, std::string(token)};
    any_ = true;
  }

  /// True (once) when key's busy marker, holding `marker`, is one this process
  /// abandoned.
  bool take(std::string_view key, std::string_view marker = {}) {
    if (!any_) return false;  // the common case: one relaxed read, no lock
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(std::string(key));
    if (it == keys_.end()) return false;
    bool ours = clock_->now() < it->second.until &&
                (it->second.token.empty() || it->second.token == marker);
    keys_.erase(it);
    any_ = !keys_.empty();
    return ours;
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_.size();
  }

  static constexpr std::size_t max_entries = 10000;

 private:
  void prune(Clock::time_point now) {
    for (auto it = keys_.begin(); it != keys_.end();)
      it = now >= it->second.until ? keys_.erase(it) : std::next(it);
    any_ = !keys_.empty();
  }

  struct Entry {
    Clock::time_point until;
    std::string token;  // empty: any marker under the key
  };

  std::chrono::seconds ttl_;
  std::shared_ptr<Clock> clock_;  // the cache's: the simulation runs it on its own
  std::mutex mu_;
  std::unordered_map<std::string, Entry> keys_;
  std::atomic<bool> any_{false};
};

}  // namespace cacheaside::detail
