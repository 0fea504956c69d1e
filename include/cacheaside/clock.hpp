// cacheaside: the clock a cache reads (standard library only).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

namespace cacheaside {

/// Time as a cache sees it: steady time for waits, throttles and the group
/// cache; unix milliseconds for the expiries written into values (other
/// processes read them). Inject a `ManualClock` to test timing without sleeping.
class Clock {
 public:
  /// A point on the monotonic (steady) time line.
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  /// Monotonic now.
  virtual time_point now() const = 0;
  /// Wall-clock now, unix time in milliseconds.
  virtual std::int64_t unix_ms() const = 0;
  /// Pauses the caller between polls of a lease held elsewhere.
  virtual void sleep_for(std::chrono::nanoseconds d) = 0;
};

/// The real clocks: std::chrono::steady_clock and system_clock.
class SystemClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  std::int64_t unix_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  void sleep_for(std::chrono::nanoseconds d) override { std::this_thread::sleep_for(d); }

  /// One shared instance, the default of `Options::clock`.
  static const std::shared_ptr<Clock>& instance() {
    static const std::shared_ptr<Clock> clock = std::make_shared<SystemClock>();
    return clock;
  }
};

/// A clock that moves only when told: `advance()`, or `sleep_for()` (which
/// advances instead of blocking, so a lease wait finishes at once). Both
/// readings move together. Thread-safe.
class ManualClock final : public Clock {
 public:
  /// Starts at the given unix time (default: 2026-01-01T00:00:00Z).
  explicit ManualClock(std::int64_t start_unix_ms = 1767225600000) : unix_start_(start_unix_ms) {}

  time_point now() const override { return time_point(elapsed()); }
  std::int64_t unix_ms() const override {
    return unix_start_ + std::chrono::duration_cast<std::chrono::milliseconds>(elapsed()).count();
  }
  void sleep_for(std::chrono::nanoseconds d) override { advance(d); }

  /// Moves both readings forward by d (negative durations are ignored).
  void advance(std::chrono::nanoseconds d) {
    if (d.count() > 0) ns_.fetch_add(d.count(), std::memory_order_acq_rel);
  }

 private:
  std::chrono::nanoseconds elapsed() const {
    // Starts a day in, so "now - something" never underflows a default time_point.
    return std::chrono::hours(24) + std::chrono::nanoseconds(ns_.load(std::memory_order_acquire));
  }

  std::int64_t unix_start_;
  std::atomic<std::int64_t> ns_{0};
};

}  // namespace cacheaside
