// Single-flight: one load per key in a process, shared by the callers that ask
// meanwhile, and only by those for whom its result is current (internal).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cacheaside::detail {

/// Stamps order the joins of flights and the operations that source their
/// results. A caller that joined a flight at stamp s may take a result proved
/// current by an operation stamped p only when s < p: the operation (a read, a
/// loader call, a guarded store) then began after the caller did, so it saw
/// every invalidation that had returned before the caller began.
using Stamp = std::uint64_t;
/// A result no joiner may take (it was read before the flight existed).
inline constexpr Stamp no_joiner = 0;

/// One load's result, shared by its leader and followers. Its state is private:
/// the leader publishes or fails once; followers wait and take.
template <class Value>
class Flight {
 public:
  /// What a follower gets from take().
  enum class Take { value, stale, retry };

  /// Told once the flight ends (an asynchronous follower), from the thread that ends it.
  using Waiter = std::function<void()>;

  /// The result, current for callers that joined before `proof`.
  void publish(std::optional<Value> v, bool is_stale, Stamp proof) {
    std::vector<std::pair<std::uint64_t, Waiter>> told;
    {
      std::lock_guard<std::mutex> lock(mu_);
      value_ = std::move(v);
      stale_ = is_stale;
      proof_ = proof;
      done_ = true;
      told.swap(waiters_);
    }
    cv_.notify_all();
    for (auto& w : told) w.second();
  }
  /// The load threw: every follower gets the exception.
  void fail(std::exception_ptr e) {
    std::vector<std::pair<std::uint64_t, Waiter>> told;
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::move(e);
      done_ = true;
      told.swap(waiters_);
    }
    cv_.notify_all();
    for (auto& w : told) w.second();
  }
  /// Calls w once the flight ends: at once, in this thread, if it has. Returns
  /// what forget_waiter() takes (0: already called).
  std::uint64_t on_done(Waiter w) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!done_) {
        waiters_.emplace_back(++last_waiter_, std::move(w));
        return last_waiter_;
      }
    }
    w();
    return 0;
  }
  /// A waiter that stopped waiting (its deadline passed): never called, and not
  /// kept while a load hangs.
  void forget_waiter(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->first == id) {
        waiters_.erase(it);
        return;
      }
    }
  }
  /// Waits until done or the deadline (real time); true when done.
  bool wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return done_; });
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }
  /// True once published or failed (a driver that polls instead of blocking).
  bool ready() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  /// After wait(): the result for a caller that joined at `joined`. Rethrows the
  /// load's exception; `retry` when the result was sourced before that caller
  /// joined (it must look again rather than risk an older value).
  /// The leader passes `leader = true`: its own result is always current for it.
  /// A stale result is given only to the leader; others learn it was stale.
  Take take(Stamp joined, std::optional<Value>& out, bool leader = false) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_) std::rethrow_exception(error_);
    if (stale_ && !leader) return Take::stale;
    if (!leader && joined >= proof_) return Take::retry;
    out = value_;
    return stale_ ? Take::stale : Take::value;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::optional<Value> value_;
  std::exception_ptr error_;
  bool stale_ = false;
  Stamp proof_ = no_joiner;
  std::vector<std::pair<std::uint64_t, Waiter>> waiters_;
  std::uint64_t last_waiter_ = 0;
};

/// The flight key of callers whose key is held out by a pending invalidation: they
/// load from the source and share only with each other, never a load that may
/// answer from memcached (a space is in no memcached key).
inline std::string held_flight_key(std::string_view mkey) { return std::string(mkey) + " held"; }

/// The flights running in one cache, by memcached key. With single-flight off
/// every caller leads a private flight.
template <class Value>
class FlightTable {
 public:
  using Ptr = std::shared_ptr<Flight<Value>>;
  struct Joined {
    Ptr flight;
    bool leader = true;
    Stamp stamp = 0;  // when the caller joined
    std::string key;  // in the table under (empty: alone)
  };

  explicit FlightTable(bool enabled) : enabled_(enabled) {}

  /// A flight of the caller's own, in no table: nobody else joins it.
  Joined alone(Stamp joined) { return {std::make_shared<Flight<Value>>(), true, joined, {}}; }

  /// Leads a new flight for key, or follows the one running.
  Joined join(const std::string& key) {
    if (!enabled_) return alone(stamp());
    std::lock_guard<std::mutex> lock(mu_);
    Stamp s = stamp();
    auto it = flights_.find(key);
    if (it != flights_.end()) return {it->second, false, s, key};
    auto f = std::make_shared<Flight<Value>>();
    flights_.emplace(key, f);
    return {std::move(f), true, s, key};
  }
  /// Leads a flight only if none is running for key (early refresh).
  std::optional<Joined> try_lead(const std::string& key) {
    if (!enabled_) return alone(stamp());
    std::lock_guard<std::mutex> lock(mu_);
    if (flights_.count(key)) return std::nullopt;
    auto f = std::make_shared<Flight<Value>>();
    flights_.emplace(key, f);
    return Joined{std::move(f), true, stamp(), key};
  }
  /// Detaches the flights for key (and its held callers'): callers from now on start
  /// a new load.
  void forget(const std::string& key) {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mu_);
    flights_.erase(key);
    flights_.erase(held_flight_key(key));
  }
  /// Detaches every flight (a write to the whole group).
  void forget_all() {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mu_);
    flights_.clear();
  }
  /// Removes the leader's flight before it publishes, so later callers start anew.
  void leave(const std::string& key, const Ptr& f) {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second == f) flights_.erase(it);
  }
  /// Flights running now (bounded by the callers loading at once).
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return flights_.size();
  }
  /// A new stamp, taken right before an operation that may source a result.
  Stamp stamp() { return next_.fetch_add(1, std::memory_order_seq_cst); }

 private:
  bool enabled_;
  std::atomic<Stamp> next_{1};
  std::mutex mu_;
  std::unordered_map<std::string, Ptr> flights_;
};

}  // namespace cacheaside::detail
