// One server's pooled connections and health (internal): a caller waits at most
// until its deadline for a free connection; a server that fails failure_limit
// calls in a row is skipped for the retry timeout.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../../store.hpp"
#include "config.hpp"
#include "connection.hpp"
#include "link.hpp"

namespace cacheaside::detail {

struct MetaPoolSettings {
  std::size_t pool_max = 16;
  std::chrono::milliseconds connect_timeout{StoreDefaults::connect_timeout};
  std::chrono::seconds retry_timeout{StoreDefaults::retry_timeout};
  int failure_limit = StoreDefaults::failure_limit;
  MetaLinkSettings link;  ///< TLS and credentials of every new connection
};

/// A connection taken from a MetaServer, and how.
struct MetaLease {
  std::unique_ptr<MetaConnection> conn;
  bool reused = false;        ///< from the pool: it may have died while idle
  bool pool_full = false;     ///< none was free: not the server's failure
  const char* why = nullptr;  ///< a new connection refused at set-up (MetaOp::why)
};

class MetaServer {
 public:
  using Time = std::chrono::steady_clock::time_point;

  MetaServer(MetaServerAddress a, const MetaPoolSettings& settings, std::atomic<int>& waiters)
      : address_(std::move(a)),
        port_(std::to_string(address_.port)),
        settings_(settings),
        waiters_(waiters) {}

  const MetaServerAddress& address() const { return address_; }

  /// Opens up to n connections now (a server that refuses is left for later).
  void open_idle(std::size_t n) {
    for (std::size_t i = 0; i < std::min(n, settings_.pool_max); ++i) {
      StoreStatus st = StoreStatus::ok;
      auto c = MetaConnection::open(address_.host, port_, settings_.connect_timeout, st,
                                    &settings_.link);
      if (!c) break;
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(c));
      ++open_;
    }
  }

  /// An idle connection, a new one, or (pool full) one freed before the deadline.
  MetaLease acquire(Time deadline, StoreStatus& st) {
    MetaLease l;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (skipped()) {
        st = StoreStatus::unavailable;
        return l;
      }
      if (!idle_.empty()) {
        l.conn = std::move(idle_.back());
        idle_.pop_back();
        l.reused = true;
        return l;
      }
      if (open_ < settings_.pool_max) {
        ++open_;
        lock.unlock();
        l.conn = MetaConnection::open(address_.host, port_, settings_.connect_timeout, st,
                                      &settings_.link, &l.why);
        if (!l.conn) {
          lock.lock();
          --open_;
          cv_.notify_one();
        }
        return l;
      }
      waiters_.fetch_add(1, std::memory_order_relaxed);
      bool timed_out = cv_.wait_until(lock, deadline) == std::cv_status::timeout;
      waiters_.fetch_sub(1, std::memory_order_relaxed);
      if (timed_out) {
        st = StoreStatus::unavailable;
        l.pool_full = true;
        return l;
      }
    }
  }

  /// Back to the pool if it is clean (in step, nothing unread); closed otherwise.
  void release(std::unique_ptr<MetaConnection> c) {
    if (!c) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (c->clean()) {
        idle_.push_back(std::move(c));
      } else {
        --open_;
      }
    }
    cv_.notify_one();
    // a connection not clean closes here, outside the lock
  }

  /// Closes every idle connection (after a restart they are likely all dead).
  void drop_idle() {
    std::vector<std::unique_ptr<MetaConnection>> gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gone.swap(idle_);
      open_ -= gone.size();
    }
    cv_.notify_all();
  }

  bool skipped() const { return now_ns() < dead_until_.load(std::memory_order_relaxed); }

  void succeeded() {
    if (failures_.load(std::memory_order_relaxed) != 0) failures_.store(0);
  }

  void failed() {
    if (failures_.fetch_add(1) + 1 < settings_.failure_limit) return;
    failures_.store(0);
    dead_until_.store(
        now_ns() +
        std::chrono::duration_cast<std::chrono::nanoseconds>(settings_.retry_timeout).count());
    drop_idle();
  }

 private:
  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  MetaServerAddress address_;
  std::string port_;
  MetaPoolSettings settings_;
  std::atomic<int>& waiters_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<MetaConnection>> idle_;
  std::size_t open_ = 0;                     // idle + in use
  std::atomic<int> failures_{0};             // calls failed in a row
  std::atomic<std::int64_t> dead_until_{0};  // steady ns; skipped until then
};

}  // namespace cacheaside::detail
