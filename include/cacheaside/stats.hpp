// cacheaside: counters and event hooks (standard library only).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cacheaside {

/// A snapshot of one cache's counters. Every counter only grows.
struct Stats {
  std::uint64_t hits = 0;            ///< fresh value served from the cache
  std::uint64_t negative_hits = 0;   ///< cached absence served (counted in hits too)
  std::uint64_t misses = 0;          ///< nothing usable in the cache
  std::uint64_t loads = 0;           ///< loader calls (a bulk loader call counts once per key)
  std::uint64_t load_errors = 0;     ///< loader threw
  std::uint64_t cache_errors = 0;    ///< store failed: down, timeout, refused, ...
  std::uint64_t decode_errors = 0;   ///< unreadable cached bytes (deleted, then loaded)
  std::uint64_t oversize = 0;        ///< value too large to cache (returned, not stored)
  std::uint64_t stale_served = 0;    ///< expired copy served (fail-safe or timeout)
  std::uint64_t coalesced = 0;       ///< callers that shared another caller's load
  std::uint64_t lease_waits = 0;     ///< waits on another process's lease
  std::uint64_t lease_timeouts = 0;  ///< waits that gave up and loaded without storing
  std::uint64_t stale_sets_prevented = 0;      ///< loaded values not stored: key changed meanwhile
  std::uint64_t early_refreshes = 0;           ///< refreshes started before expiry
  std::uint64_t load_timeouts = 0;             ///< loads past soft/hard timeout
  std::uint64_t puts = 0;                      ///< put() calls
  std::uint64_t invalidations = 0;             ///< keys invalidated
  std::uint64_t invalidations_pending = 0;     ///< invalidations the store did not confirm: kept
  std::uint64_t invalidation_retries = 0;      ///< background attempts to apply them
  std::uint64_t invalidations_applied = 0;     ///< pending ones the store confirmed later
  std::uint64_t invalidations_overflowed = 0;  ///< failed while the pending table was full
  std::uint64_t invalidations_dropped = 0;     ///< given up: table full without a group, or
                                               ///< the cache destroyed without a spool
  std::uint64_t near_hits = 0;                 ///< served from the near cache (counted in hits too)
  std::uint64_t near_evictions = 0;            ///< near entries evicted for room
  std::uint64_t near_log_reads = 0;            ///< reads of the invalidation log
  std::uint64_t near_log_gaps = 0;  ///< log reads that could not account for every write:
                                    ///< the whole near cache dropped
  /// values refused by Options::signing_keys (deleted, then loaded)
  std::uint64_t integrity_failures = 0;
};

/// What one cache holds in process memory now, besides its options: each table
/// has a bound, so churn through any number of keys leaves it flat.
struct Usage {
  std::size_t flights = 0;    ///< loads running (at most one per key being loaded)
  std::size_t throttled = 0;  ///< keys the fail-safe throttle rests (at most 100,000)
  std::size_t pending = 0;    ///< invalidations waiting for the store (at most
                              ///< Options::max_pending_invalidations, plus a group bump)
  std::size_t near = 0;       ///< near cache entries (at most Options::near_capacity)
};

/// Calls f(name, help, value) for every counter of s, in declaration order (for
/// exporters: Prometheus, logs).
template <class F>
void for_each_counter(const Stats& s, F&& f) {
  f("hits", "fresh values served from the cache", s.hits);
  f("negative_hits", "cached absences served (counted in hits too)", s.negative_hits);
  f("misses", "lookups that found nothing usable", s.misses);
  f("loads", "loader calls (a bulk call counts once per key)", s.loads);
  f("load_errors", "loader calls that threw", s.load_errors);
  f("cache_errors", "store failures absorbed", s.cache_errors);
  f("decode_errors", "unreadable cached bytes", s.decode_errors);
  f("integrity_failures", "cached values refused by the signing keys", s.integrity_failures);
  f("oversize", "values too large to cache", s.oversize);
  f("stale_served", "expired copies served", s.stale_served);
  f("coalesced", "callers that shared another caller's load", s.coalesced);
  f("lease_waits", "waits on another process's lease", s.lease_waits);
  f("lease_timeouts", "lease waits that gave up", s.lease_timeouts);
  f("stale_sets_prevented", "loaded values not stored after a write", s.stale_sets_prevented);
  f("early_refreshes", "refreshes started before expiry", s.early_refreshes);
  f("load_timeouts", "loads past soft or hard timeout", s.load_timeouts);
  f("puts", "put calls", s.puts);
  f("invalidations", "keys invalidated", s.invalidations);
  f("invalidations_pending", "invalidations kept for retry", s.invalidations_pending);
  f("invalidation_retries", "retries of pending invalidations", s.invalidation_retries);
  f("invalidations_applied", "pending invalidations applied later", s.invalidations_applied);
  f("invalidations_overflowed", "invalidations failed with the pending table full",
    s.invalidations_overflowed);
  f("invalidations_dropped", "pending invalidations given up", s.invalidations_dropped);
  f("near_hits", "values served from the near cache", s.near_hits);
  f("near_evictions", "near cache entries evicted", s.near_evictions);
  f("near_log_reads", "reads of the invalidation log", s.near_log_reads);
  f("near_log_gaps", "invalidation log gaps (near cache dropped)", s.near_log_gaps);
}

/// What happened, for `Options::on_event`.
enum class EventType {
  hit,
  negative_hit,
  miss,
  load_start,
  load_end,      ///< duration = loader time
  load_error,    ///< reason = exception text
  stale_served,  ///< reason = why (load_error, soft_timeout, hard_timeout,
                 ///< lease_busy, throttled, shared: a follower's own copy)
  lease_wait,    ///< duration = time waited for another holder
  cache_error,   ///< reason = store status / operation
  decode_error,
  oversize,
  stale_set_prevented,
  early_refresh,
  invalidate,
  put,
  invalidation_pending,  ///< reason = the failed operation; retried in the background
  invalidation_applied,  ///< duration = time it was pending
  invalidation_dropped,  ///< reason = why it was given up
  near_hit,              ///< a fresh value (or absence) from the near cache
  near_gap,              ///< the invalidation log had a gap: near cache dropped
  leases_degraded,       ///< reason = why: the server gives no CAS ids (memcached -C);
                         ///< single-flight and plain sets from then on (once per cache)
  integrity_failure,     ///< reason = why a value was refused (Options::signing_keys):
                         ///< unsigned value, unknown signing key id, wrong tag
};

/// Name of an event type, e.g. "hit".
inline const char* to_string(EventType t) {
  static constexpr const char* names[] = {"hit",
                                          "negative_hit",
                                          "miss",
                                          "load_start",
                                          "load_end",
                                          "load_error",
                                          "stale_served",
                                          "lease_wait",
                                          "cache_error",
                                          "decode_error",
                                          "oversize",
                                          "stale_set_prevented",
                                          "early_refresh",
                                          "invalidate",
                                          "put",
                                          "invalidation_pending",
                                          "invalidation_applied",
                                          "invalidation_dropped",
                                          "near_hit",
                                          "near_gap",
                                          "leases_degraded",
                                          "integrity_failure"};
  auto i = static_cast<std::size_t>(t);
  return i < sizeof names / sizeof names[0] ? names[i] : "unknown";
}

/// One event. The views are valid only during the callback.
struct Event {
  EventType type;                        ///< what happened
  std::string_view cache;                ///< Options::name
  std::string_view key;                  ///< the memcached key
  std::chrono::nanoseconds duration{0};  ///< how long it took, where it has a duration
  std::string_view reason;               ///< why, where there is more to say (a store error)
};

namespace detail {

// A counter that many threads bump at once (hits): a padded slot per thread
// (threads take slots in turn), summed when read, so hits on different cores do
// not fight over one cache line.
class StripedCounter {
 public:
  void fetch_add(std::uint64_t n, std::memory_order) {
    slots_[slot()].v.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t load(std::memory_order = std::memory_order_relaxed) const {
    std::uint64_t sum = 0;
    for (const Slot& s : slots_) sum += s.v.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr std::size_t n = 16;
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> v{0};
  };
  static std::size_t slot() {
    static std::atomic<std::size_t> next{0};
    thread_local std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % n;
    return mine;
  }
  Slot slots_[n];
};

// Relaxed atomics: counters are statistics, not synchronization.
struct AtomicStats {
  StripedCounter hits, negative_hits, near_hits;
  std::atomic<std::uint64_t> misses{0}, loads{0}, load_errors{0}, cache_errors{0}, decode_errors{0},
      oversize{0}, stale_served{0}, coalesced{0}, lease_waits{0}, lease_timeouts{0},
      stale_sets_prevented{0}, early_refreshes{0}, load_timeouts{0}, puts{0}, invalidations{0},
      invalidations_pending{0}, invalidation_retries{0}, invalidations_applied{0},
      invalidations_overflowed{0}, invalidations_dropped{0}, near_evictions{0}, near_log_reads{0},
      near_log_gaps{0}, integrity_failures{0};

  template <class Counter>
  static void bump(Counter& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }

  Stats snapshot() const {
    auto r = [](const auto& c) { return c.load(std::memory_order_relaxed); };
    Stats s;
    s.hits = r(hits);
    s.negative_hits = r(negative_hits);
    s.misses = r(misses);
    s.loads = r(loads);
    s.load_errors = r(load_errors);
    s.cache_errors = r(cache_errors);
    s.decode_errors = r(decode_errors);
    s.integrity_failures = r(integrity_failures);
    s.oversize = r(oversize);
    s.stale_served = r(stale_served);
    s.coalesced = r(coalesced);
    s.lease_waits = r(lease_waits);
    s.lease_timeouts = r(lease_timeouts);
    s.stale_sets_prevented = r(stale_sets_prevented);
    s.early_refreshes = r(early_refreshes);
    s.load_timeouts = r(load_timeouts);
    s.puts = r(puts);
    s.invalidations = r(invalidations);
    s.invalidations_pending = r(invalidations_pending);
    s.invalidation_retries = r(invalidation_retries);
    s.invalidations_applied = r(invalidations_applied);
    s.invalidations_overflowed = r(invalidations_overflowed);
    s.invalidations_dropped = r(invalidations_dropped);
    s.near_hits = r(near_hits);
    s.near_evictions = r(near_evictions);
    s.near_log_reads = r(near_log_reads);
    s.near_log_gaps = r(near_log_gaps);
    return s;
  }
};

}  // namespace detail
}  // namespace cacheaside
