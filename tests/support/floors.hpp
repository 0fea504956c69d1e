// The floors the cross-process checkers judge reads against: exactly what the
// README promises of an invalidation (one copy for tests/worker.cpp and
// tests/async/worker_async.cpp).
//   - confirmed by memcached: no read in any process that begins after it returned
//     gets an older version;
//   - not confirmed (kept pending, retried): none in its own process (reads of a
//     pending key bypass the cache); in other processes only once it is applied,
//     which this process knows when it sees its pending table empty after the
//     invalidation returned.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace cacheaside_test {

class InvalidationFloors {
 public:
  /// promote(k, v): version v of key k becomes a floor for the other processes (at
  /// once, or near_sync later with the near cache on).
  InvalidationFloors(int keys, std::function<void(int, std::uint64_t)> promote)
      : own_(static_cast<std::size_t>(keys)), promote_(std::move(promote)) {}

  /// This process's floor for k (the others' come through promote).
  std::uint64_t own(int k) const { return own_[static_cast<std::size_t>(k)].load(); }

  /// The invalidation of version v of k returned; confirmed: what it returned.
  void returned(int k, std::uint64_t v, bool confirmed) {
    raise(own_[static_cast<std::size_t>(k)], v);
    if (confirmed) return promote_(k, v);
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.emplace_back(k, v);
    ++unconfirmed_;
  }

  /// Promotes the unconfirmed invalidations that returned before pending() said 0:
  /// pending() is the cache's count of invalidations still pending, dropped() of
  /// those it gave up (never applied: nothing is promoted once one is).
  template <class Pending, class Dropped>
  void settle(Pending pending, Dropped dropped) {
    std::lock_guard<std::mutex> one(settle_mu_);
    std::size_t n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      n = waiting_.size();
    }
    // Every one of the first n was in the pending table before this read of it.
    if (n == 0 || pending() != 0 || dropped() != 0) return;
    std::vector<std::pair<int, std::uint64_t>> applied;
    {
      std::lock_guard<std::mutex> lock(mu_);
      applied.assign(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(n));
      waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    for (const auto& [k, v] : applied) promote_(k, v);
  }

  /// Invalidations not confirmed when they returned.
  int unconfirmed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unconfirmed_;
  }
  /// Of those, not known applied yet.
  int unapplied() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(waiting_.size());
  }

  static void raise(std::atomic<std::uint64_t>& a, std::uint64_t v) {
    std::uint64_t cur = a.load();
    while (cur < v && !a.compare_exchange_weak(cur, v)) {
    }
  }

 private:
  std::vector<std::atomic<std::uint64_t>> own_;
  std::function<void(int, std::uint64_t)> promote_;
  mutable std::mutex mu_;
  std::mutex settle_mu_;  // one settle at a time: each takes its n from the front
  std::vector<std::pair<int, std::uint64_t>> waiting_;
  int unconfirmed_ = 0;
};

}  // namespace cacheaside_test
