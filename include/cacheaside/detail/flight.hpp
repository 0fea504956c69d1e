// Single-flight: one load per key in a process, shared by every caller that
// asks meanwhile.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace cacheaside::detail {

template <class Value>
struct Flight {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::optional<Value> value;
  std::exception_ptr error;
  bool stale = false;  // the result is a stale copy (fail-safe)

  // overtaken: the value was loaded before a write to the key (its store was refused), so
  // callers that joined late must not take it.
  bool overtaken = false;

  void publish(std::optional<Value> v, bool is_stale, bool was_overtaken = false) {
    {
      std::lock_guard<std::mutex> lock(mu);
      value = std::move(v);
      stale = is_stale;
      overtaken = was_overtaken;
      done = true;
    }
    cv.notify_all();
  }
  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      error = std::move(e);
      done = true;
    }
    cv.notify_all();
  }
  /// Waits until done or the deadline; true when done.
  template <class TimePoint>
  bool wait_until(TimePoint deadline) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_until(lock, deadline, [&] { return done; });
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
};

/// Registry of in-flight loads by memcached key.
template <class Value>
class FlightTable {
 public:
  using Ptr = std::shared_ptr<Flight<Value>>;

  /// Returns {flight, true} when the caller leads (must finish() it), else
  /// {existing, false}.
  std::pair<Ptr, bool> join(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flights_.find(key);
    if (it != flights_.end()) return {it->second, false};
    auto f = std::make_shared<Flight<Value>>();
    flights_.emplace(key, f);
    return {f, true};
  }
  /// Detaches the flight for key, so callers from now on start a new load.
  void forget(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    flights_.erase(key);
  }
  /// The flight for key, if one is running.
  Ptr find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flights_.find(key);
    return it == flights_.end() ? nullptr : it->second;
  }
  /// Removes the leader's flight (before publishing, so late callers start a
  /// new load).
  void leave(const std::string& key, const Ptr& f) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second == f) flights_.erase(it);
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, Ptr> flights_;
};

}  // namespace cacheaside::detail
