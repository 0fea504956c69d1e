// The fail-safe throttle: after a failed load served stale, the loader rests
// for a while per key (internal).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "../../clock.hpp"

namespace cacheaside::detail {

class FailSafeThrottle {
 public:
  FailSafeThrottle(std::chrono::milliseconds period, const Clock& clock)
      : period_(period), clock_(clock) {}

  /// True while key rests.
  bool active(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = until_.find(key);
    if (it == until_.end()) return false;
    if (clock_.now() < it->second) return true;
    until_.erase(it);
    return false;
  }
  /// Starts key's rest.
  void start(const std::string& key) {
    if (period_.count() <= 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (until_.size() >= max_keys) until_.clear();  // bounded under key churn
    until_[key] = clock_.now() + period_;
  }
  /// Ends key's rest (it was invalidated: its stale copy is gone).
  void clear(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    until_.erase(key);
  }

  /// Keys resting now: at most max_keys.
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return until_.size();
  }

  static constexpr std::size_t max_keys = 100000;

 private:
  std::chrono::milliseconds period_;
  const Clock& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Clock::time_point> until_;
};

}  // namespace cacheaside::detail
