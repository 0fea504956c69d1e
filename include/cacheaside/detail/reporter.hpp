// Counters and events of one cache, in one place (internal).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../stats.hpp"
#include "../store.hpp"

namespace cacheaside::detail {

class Reporter {
 public:
  Reporter(std::string name, std::function<void(const Event&)> hook)
      : name_(std::move(name)), hook_(std::move(hook)) {}

  mutable AtomicStats stats;
  template <class Counter>
  static void bump(Counter& c, std::uint64_t n = 1) {
    AtomicStats::bump(c, n);
  }

  bool hooked() const { return static_cast<bool>(hook_); }
  void emit(EventType type, std::string_view key, std::chrono::nanoseconds d = {},
            std::string_view reason = {}) const {
    if (!hook_) return;
    try {
      hook_(Event{type, name_, key, d, reason});
    } catch (...) {
      // A failing hook must not break the cache.
    }
  }
  void hit(std::string_view key, bool negative) const {
    AtomicStats::bump(stats.hits);
    if (negative) AtomicStats::bump(stats.negative_hits);
    emit(negative ? EventType::negative_hit : EventType::hit, key);
  }
  void near_hit(std::string_view key, bool negative) const {
    AtomicStats::bump(stats.hits);
    AtomicStats::bump(stats.near_hits);
    if (negative) AtomicStats::bump(stats.negative_hits);
    emit(EventType::near_hit, key);
  }
  void miss(std::string_view key) const {
    AtomicStats::bump(stats.misses);
    emit(EventType::miss, key);
  }
  void cache_error(std::string_view key, StoreStatus st, const char* op) const {
    AtomicStats::bump(stats.cache_errors);
    if (hook_) emit(EventType::cache_error, key, {}, std::string(op) + ": " + to_string(st));
  }
  void served_stale(std::string_view key, std::string_view why) const {
    AtomicStats::bump(stats.stale_served);
    emit(EventType::stale_served, key, {}, why);
  }
  void decode_error(std::string_view key, std::string_view why) const {
    AtomicStats::bump(stats.decode_errors);
    emit(EventType::decode_error, key, {}, why);
  }
  void oversize(std::string_view key, std::string_view why) const {
    AtomicStats::bump(stats.oversize);
    emit(EventType::oversize, key, {}, why);
  }
  /// Counts a write's answer; true when it stored.
  bool write(std::string_view key, StoreStatus st, const char* op) const {
    if (st == StoreStatus::ok) return true;
    if (st == StoreStatus::too_large) {
      oversize(key, "refused by the server");
    } else if (st == StoreStatus::exists || st == StoreStatus::not_found ||
               st == StoreStatus::not_stored) {
      AtomicStats::bump(stats.stale_sets_prevented);
      emit(EventType::stale_set_prevented, key, {}, to_string(st));
    } else {
      cache_error(key, st, op);
    }
    return false;
  }

 private:
  std::string name_;
  std::function<void(const Event&)> hook_;
};

/// Events kept while a lock is held and told once it is released: a hook may call
/// back into the cache, which takes the same lock.
class HeldEvents {
 public:
  explicit HeldEvents(const Reporter& r) : report_(r) {}
  HeldEvents(const HeldEvents&) = delete;
  HeldEvents& operator=(const HeldEvents&) = delete;
  ~HeldEvents() { tell(); }

  void add(EventType type, std::string key, std::string reason = {},
           std::chrono::nanoseconds d = {}) {
    if (report_.hooked()) held_.push_back({type, std::move(key), std::move(reason), d});
  }

  /// Emits what is held (call with no lock held).
  void tell() {
    for (const auto& e : held_) report_.emit(e.type, e.key, e.d, e.reason);
    held_.clear();
  }

 private:
  struct Held {
    EventType type;
    std::string key;
    std::string reason;
    std::chrono::nanoseconds d;
  };
  const Reporter& report_;
  std::vector<Held> held_;
};

}  // namespace cacheaside::detail
