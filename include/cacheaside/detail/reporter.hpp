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
  void integrity_failure(std::string_view key, std::string_view why) const {
    AtomicStats::bump(stats.integrity_failures);
    emit(EventType::integrity_failure, key, {}, why);
  }
  void oversize(std::string_view key, std::string_view why) const {
    AtomicStats::bump(stats.oversize);
    emit(EventType::oversize, key, {}, why);
  }
  void load_started(std::string_view key) const {
    AtomicStats::bump(stats.loads);
    emit(EventType::load_start, key);
  }
  void load_ended(std::string_view key, std::chrono::nanoseconds d) const {
    emit(EventType::load_end, key, d);
  }
  void load_failed(std::string_view key, std::chrono::nanoseconds d, std::string_view why) const {
    AtomicStats::bump(stats.load_errors);
    emit(EventType::load_error, key, d, why);
  }
  /// A caller that shares a load another caller here leads.
  void coalesced() const { AtomicStats::bump(stats.coalesced); }
  /// A caller's soft or hard timeout ran out before its load ended.
  void load_timed_out() const { AtomicStats::bump(stats.load_timeouts); }
  void early_refresh(std::string_view key) const {
    AtomicStats::bump(stats.early_refreshes);
    emit(EventType::early_refresh, key);
  }
  /// n keys found leased by another process: waited for.
  void lease_waits(std::size_t n) const { AtomicStats::bump(stats.lease_waits, n); }
  void lease_wait_ended(std::string_view key, std::chrono::nanoseconds waited) const {
    emit(EventType::lease_wait, key, waited);
  }
  void lease_wait_timed_out(std::string_view key, std::chrono::nanoseconds waited) const {
    AtomicStats::bump(stats.lease_timeouts);
    emit(EventType::lease_wait, key, waited, "timeout");
  }
  void serialize_failed(std::string_view key, std::string_view why) const {
    AtomicStats::bump(stats.cache_errors);
    emit(EventType::cache_error, key, {}, why);
  }
  void leases_degraded(std::string_view why) const {
    emit(EventType::leases_degraded, "", {}, why);
  }
  void put_called() const { AtomicStats::bump(stats.puts); }
  void invalidate_called() const { AtomicStats::bump(stats.invalidations); }
  /// A put or invalidate of key, about to go to the store.
  void written(std::string_view key, bool put) const {
    emit(put ? EventType::put : EventType::invalidate, key);
  }
  void near_evicted(std::size_t n) const { AtomicStats::bump(stats.near_evictions, n); }
  void near_log_read() const { AtomicStats::bump(stats.near_log_reads); }
  void invalidation_retried() const { AtomicStats::bump(stats.invalidation_retries); }
  void invalidation_overflowed() const { AtomicStats::bump(stats.invalidations_overflowed); }

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

  /// Counted now, told later.
  void invalidation_pending(std::string key, std::string reason, std::uint64_t n = 1) {
    Reporter::bump(report_.stats.invalidations_pending, n);
    add(EventType::invalidation_pending, std::move(key), std::move(reason));
  }
  /// Told only: counted with the record that caused it.
  void invalidation_pending_told(std::string key, std::string reason) {
    add(EventType::invalidation_pending, std::move(key), std::move(reason));
  }
  void invalidation_applied(std::string key, std::chrono::nanoseconds pending_for) {
    Reporter::bump(report_.stats.invalidations_applied);
    add(EventType::invalidation_applied, std::move(key), {}, pending_for);
  }
  void invalidation_dropped(std::string key, std::string why) {
    Reporter::bump(report_.stats.invalidations_dropped);
    add(EventType::invalidation_dropped, std::move(key), std::move(why));
  }
  void near_gap(std::string key) {
    Reporter::bump(report_.stats.near_log_gaps);
    add(EventType::near_gap, std::move(key));
  }

  /// Emits what is held (call with no lock held).
  void tell() {
    for (const auto& e : held_) report_.emit(e.type, e.key, e.d, e.reason);
    held_.clear();
  }

 private:
  void add(EventType type, std::string key, std::string reason = {},
           std::chrono::nanoseconds d = {}) {
    if (report_.hooked()) held_.push_back({type, std::move(key), std::move(reason), d});
  }

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
