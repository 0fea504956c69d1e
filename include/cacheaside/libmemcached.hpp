// cacheaside: MemcachedStore, a Store over a libmemcached connection pool.
// Needs libmemcached >= 1.1.4 with libmemcachedutil (Debian: libmemcached-dev);
// link cacheaside::memcached.
#pragma once

#include <libmemcached-1.0/memcached.h>
#include <libmemcachedutil-1.0/pool.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <iterator>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "error.hpp"
#include "server_options.hpp"
#include "store.hpp"

namespace cacheaside {

/// A thread-safe Store over a pool of libmemcached connections.
///
/// Takes a libmemcached configuration string (`--SERVER=host:port --POOL-MAX=16 ...`)
/// or the same as `ServerOptions`. Defaults safer than libmemcached's are applied
/// unless the string sets them: ASCII protocol, TCP_NODELAY, StoreDefaults' connect, poll
/// and retry timeouts, failure limit and pool size, a dead server retried after
/// dead_retry_seconds; with several servers also
/// --DISTRIBUTION=consistent (ketama) and --REMOVE-FAILED-SERVERS. CAS support is
/// always on (leases need it).
///
/// Never throws for I/O: every failure is a StoreStatus. The constructor throws
/// `cacheaside::Error` for a configuration libmemcached rejects.
class MemcachedStore : public Store {
 public:
  /// Seconds before a server marked dead is tried again.
  static constexpr std::uint64_t dead_retry_seconds = 2;

  /// From typed options; see ServerOptions.
  explicit MemcachedStore(const ServerOptions& options) : MemcachedStore(options.to_config()) {}

  /// From a libmemcached configuration string ("host:port" alone is accepted too).
  explicit MemcachedStore(const std::string& config) {
    std::string user = trim(config);
    if (user.empty()) throw Error("cacheaside: empty libmemcached configuration");
    if (user.find("--") == std::string::npos) user = "--SERVER=" + user;  // "host:port"
    char err[512] = {};
    if (libmemcached_check_configuration(user.data(), user.size(), err, sizeof err) !=
        MEMCACHED_SUCCESS) {
      throw Error("cacheaside: bad libmemcached configuration '" + redact_config(user) +
                  "': " + detail::scrub(err, user));
    }
    std::uint32_t servers = 0;
    if (memcached_st* probe = memcached(user.data(), user.size())) {
      servers = memcached_server_count(probe);
      memcached_free(probe);
    }
    if (servers == 0)
      throw Error("cacheaside: no server in configuration '" + redact_config(user) + "'");
    if (has_option(user, "--BINARY-PROTOCOL"))
      throw Error(
          "cacheaside: the binary protocol is not supported "
          "(deprecated by memcached)");

    // Our defaults first: libmemcached applies options in order, so the user's win.
    std::string full;
    auto def = [&](const char* name, const std::string& value) {
      if (!has_option(user, name)) full.append(name).append(value).append(" ");
    };
    def("--CONNECT-TIMEOUT", "=" + std::to_string(StoreDefaults::connect_timeout.count()));
    def("--POLL-TIMEOUT", "=" + std::to_string(StoreDefaults::poll_timeout.count()));
    def("--RETRY-TIMEOUT", "=" + std::to_string(StoreDefaults::retry_timeout.count()));
    def("--TCP-NODELAY", "");
    def("--POOL-MAX", "=" + std::to_string(StoreDefaults::pool_max()));
    if (servers > 1) {
      def("--DISTRIBUTION", "=consistent");
      def("--REMOVE-FAILED-SERVERS", "=1");
    }
    full += user;
    config_ = redact_config(full);
    pool_ = memcached_pool(full.data(), full.size());
    if (!pool_) throw Error("cacheaside: could not create a pool from '" + config_ + "'");
    memcached_pool_behavior_set(pool_, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    // Not expressible in the configuration string.
    memcached_pool_behavior_set(pool_, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT,
                                StoreDefaults::failure_limit);
    memcached_pool_behavior_set(pool_, MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, dead_retry_seconds);
    // A free connection is waited for at most the poll timeout: a full pool costs a
    // caller no more than a server that does not answer.
    std::uint64_t poll_ms = 0;
    if (memcached_pool_behavior_get(pool_, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, &poll_ms) ==
            MEMCACHED_SUCCESS &&
        poll_ms > 0)
      pool_wait_ms_ = static_cast<long>(poll_ms);
  }

  MemcachedStore(const MemcachedStore&) = delete;
  MemcachedStore& operator=(const MemcachedStore&) = delete;

  ~MemcachedStore() override {
    if (pool_) memcached_pool_destroy(pool_);
  }

  /// The configuration string in effect (defaults + yours), passwords masked
  /// (redact_config).
  const std::string& config() const { return config_; }

  /// Callers waiting for a free pooled connection now (a gauge of pool contention:
  /// each waits at most the poll timeout).
  int pool_waiters() const { return pool_waiters_.load(std::memory_order_relaxed); }

  StoreStatus get(std::string_view key, StoreItem& item) override {
    Conn c(*this);
    if (!c) return c.status();
    const char* keys[1] = {key.data()};
    size_t lens[1] = {key.size()};
    memcached_return_t rc = memcached_mget(c.mc, keys, lens, 1);
    if (rc != MEMCACHED_SUCCESS) return map(c.mc, rc);
    memcached_result_st result;
    memcached_result_create(c.mc, &result);
    StoreStatus st = StoreStatus::not_found;
    while (true) {
      memcached_result_st* r = memcached_fetch_result(c.mc, &result, &rc);
      if (!r) break;
      if (st == StoreStatus::not_found) {
        item.value.assign(memcached_result_value(r), memcached_result_length(r));
        item.flags = memcached_result_flags(r);
        item.cas = memcached_result_cas(r);
        st = StoreStatus::ok;
      }
    }
    memcached_result_free(&result);
    if (st == StoreStatus::ok) return st;
    if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_SUCCESS)
      return StoreStatus::not_found;
    return map(c.mc, rc);
  }

  StoreStatus get_multi(const std::vector<std::string>& keys, std::vector<StoreItem>& items,
                        std::vector<char>& found) override {
    items.resize(keys.size());
    found.assign(keys.size(), 0);
    if (keys.empty()) return StoreStatus::ok;
    Conn c(*this);
    if (!c) return c.status();
    std::vector<const char*> kp(keys.size());
    std::vector<size_t> kl(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      kp[i] = keys[i].data();
      kl[i] = keys[i].size();
    }
    memcached_return_t rc = memcached_mget(c.mc, kp.data(), kl.data(), keys.size());
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_SOME_ERRORS) return map(c.mc, rc);
    memcached_result_st result;
    memcached_result_create(c.mc, &result);
    // A server answers in request order (skipping misses), so the next answer is almost
    // always at or just after the cursor; a sorted index covers several servers.
    std::size_t cursor = 0;
    std::vector<std::size_t> order;
    while (memcached_result_st* r = memcached_fetch_result(c.mc, &result, &rc)) {
      std::string_view k(memcached_result_key_value(r), memcached_result_key_length(r));
      std::size_t idx = keys.size();
      for (std::size_t j = cursor; order.empty() && j < keys.size(); ++j) {
        if (keys[j] == k) {
          idx = j;
          cursor = j + 1;
          break;
        }
      }
      if (idx == keys.size()) {
        if (order.empty()) {
          order.resize(keys.size());
          for (std::size_t i = 0; i < keys.size(); ++i) order[i] = i;
          std::sort(order.begin(), order.end(),
                    [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
        }
        auto it = std::lower_bound(order.begin(), order.end(), k,
                                   [&](std::size_t i, std::string_view v) { return keys[i] < v; });
        if (it == order.end() || keys[*it] != k) continue;
        idx = *it;
      }
      StoreItem& item = items[idx];
      item.value.assign(memcached_result_value(r), memcached_result_length(r));
      item.flags = memcached_result_flags(r);
      item.cas = memcached_result_cas(r);
      found[idx] = 1;
    }
    memcached_result_free(&result);
    if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_SUCCESS)
      return StoreStatus::ok;
    // Partial answers (one server of several down) are still used.
    StoreStatus st = map(c.mc, rc);
    return std::any_of(found.begin(), found.end(), [](char f) { return f != 0; }) ? StoreStatus::ok
                                                                                  : st;
  }

  StoreStatus set(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    return store(memcached_set, key, value, flags, exptime);
  }

  StoreStatus add(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    return store(memcached_add, key, value, flags, exptime);
  }

  StoreStatus cas(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime, std::uint64_t cas_id) override {
    Conn c(*this);
    if (!c) return c.status();
    return map(c.mc, memcached_cas(c.mc, key.data(), key.size(), value.data(), value.size(),
                                   static_cast<time_t>(exptime), flags, cas_id));
  }

  StoreStatus remove(std::string_view key) override {
    Conn c(*this);
    if (!c) return c.status();
    return map(c.mc, memcached_delete(c.mc, key.data(), key.size(), 0));
  }

  StoreStatus incr(std::string_view key, std::uint64_t delta, std::uint64_t initial,
                   Exptime exptime, std::uint64_t& value) override {
    Conn c(*this);
    if (!c) return c.status();
    // The ASCII protocol has no incr-with-initial: incr, else add, else incr again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      StoreStatus st = map(c.mc, memcached_increment(c.mc, key.data(), key.size(),
                                                     static_cast<std::uint32_t>(delta), &value));
      if (st != StoreStatus::not_found) return st;
      std::string init = std::to_string(initial);
      st = map(c.mc, memcached_add(c.mc, key.data(), key.size(), init.data(), init.size(),
                                   static_cast<time_t>(exptime), 0));
      if (st == StoreStatus::ok) {
        value = initial;
        return st;
      }
      if (st != StoreStatus::not_stored) return st;
    }
    return StoreStatus::error;
  }

 private:
  using StoreFn = memcached_return_t (*)(memcached_st*, const char*, size_t, const char*, size_t,
                                         time_t, uint32_t);

  // set or add.
  StoreStatus store(StoreFn fn, std::string_view key, std::string_view value, std::uint32_t flags,
                    Exptime exptime) {
    Conn c(*this);
    if (!c) return c.status();
    return map(c.mc, fn(c.mc, key.data(), key.size(), value.data(), value.size(),
                        static_cast<time_t>(exptime), flags));
  }

  // A connection borrowed from the pool for one operation. With more threads
  // than --POOL-MAX, waits at most the poll timeout for one to come back.
  // libmemcached's own timed wait cannot be used: it adds the relative time to
  // time(NULL), whole seconds, so a 100 ms wait ends anywhere from at once to
  // 100 ms later. The pool is asked without waiting; the waiting is ours.
  struct Conn {
    explicit Conn(const MemcachedStore& s) : store(s) {
      mc = try_fetch();
      if (!mc && rc == MEMCACHED_NOTFOUND) wait_for_one();
    }
    ~Conn() {
      if (!mc) return;
      memcached_pool_release(store.pool_, mc);
      // Checked after the release: a waiter counted itself before its last try.
      if (store.pool_waiters_.load() > 0) {
        {
          std::lock_guard<std::mutex> lock(store.pool_mu_);
          ++store.pool_releases_;
        }
        store.pool_cv_.notify_all();
      }
    }
    explicit operator bool() const { return mc != nullptr; }
    // No connection within the wait, or none could be made: either way unavailable.
    StoreStatus status() const { return StoreStatus::unavailable; }

    memcached_st* try_fetch() {
      timespec none{0, 0};  // none free: MEMCACHED_NOTFOUND at once
      return memcached_pool_fetch(store.pool_, &none, &rc);
    }
    void wait_for_one() {
      auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(store.pool_wait_ms_);
      ++store.pool_waiters_;
      std::unique_lock<std::mutex> lock(store.pool_mu_);
      for (;;) {
        std::uint64_t seen = store.pool_releases_;
        lock.unlock();
        mc = try_fetch();
        lock.lock();
        if (mc || rc != MEMCACHED_NOTFOUND) break;
        if (!store.pool_cv_.wait_until(lock, deadline,
                                       [&] { return store.pool_releases_ != seen; }))
          break;
      }
      --store.pool_waiters_;
    }

    const MemcachedStore& store;
    memcached_st* mc = nullptr;
    memcached_return_t rc = MEMCACHED_SUCCESS;
  };

  static StoreStatus map(memcached_st* mc, memcached_return_t rc) {
    using S = StoreStatus;
    static constexpr std::pair<memcached_return_t, StoreStatus> known[] = {
        {MEMCACHED_SUCCESS, S::ok},
        {MEMCACHED_STORED, S::ok},
        {MEMCACHED_DELETED, S::ok},
        {MEMCACHED_END, S::ok},
        {MEMCACHED_NOTFOUND, S::not_found},
        {MEMCACHED_DATA_EXISTS, S::exists},
        {MEMCACHED_NOTSTORED, S::not_stored},
        {MEMCACHED_E2BIG, S::too_large},
        {MEMCACHED_TIMEOUT, S::timeout},
        // No server could be talked to.
        {MEMCACHED_CONNECTION_FAILURE, S::unavailable},
        {MEMCACHED_CONNECTION_SOCKET_CREATE_FAILURE, S::unavailable},
        {MEMCACHED_SERVER_MARKED_DEAD, S::unavailable},
        {MEMCACHED_SERVER_TEMPORARILY_DISABLED, S::unavailable},
        {MEMCACHED_NO_SERVERS, S::unavailable},
        {MEMCACHED_HOST_LOOKUP_FAILURE, S::unavailable},
        {MEMCACHED_ERRNO, S::unavailable},
        {MEMCACHED_WRITE_FAILURE, S::unavailable},
        {MEMCACHED_READ_FAILURE, S::unavailable},
        {MEMCACHED_UNKNOWN_READ_FAILURE, S::unavailable},
    };
    if (rc == MEMCACHED_SERVER_ERROR) {
      // "SERVER_ERROR object too large for cache"
      const char* msg = memcached_last_error_message(mc);
      return msg && std::strstr(msg, "too large") ? S::too_large : S::error;
    }
    for (const auto& k : known)
      if (k.first == rc) return k.second;
    return S::error;
  }

  static std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
  }

  static bool has_option(const std::string& config, const char* name) {
    std::string upper(config);
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return upper.find(name) != std::string::npos;
  }

  memcached_pool_st* pool_ = nullptr;
  std::string config_;
  long pool_wait_ms_ = 100;
  // Callers waiting for a free connection, and releases they wait for (Conn).
  mutable std::atomic<int> pool_waiters_{0};
  mutable std::mutex pool_mu_;
  mutable std::condition_variable pool_cv_;
  mutable std::uint64_t pool_releases_ = 0;
};

}  // namespace cacheaside
