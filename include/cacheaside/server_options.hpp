// cacheaside: typed connection options for the memcached stores (standard
// library only).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

namespace cacheaside {

/// The stores' defaults, for MemcachedStore and MetaStore alike (a configuration
/// string or ServerOptions field that is not set keeps these).
struct StoreDefaults {
  /// Time to open a connection.
  static constexpr std::chrono::milliseconds connect_timeout{200};
  /// Time to wait for an answer (and for a free pooled connection).
  static constexpr std::chrono::milliseconds poll_timeout{100};
  /// A server skipped after failure_limit failed calls in a row is tried again after this.
  static constexpr std::chrono::seconds retry_timeout{1};
  /// Calls failed in a row after which a server is skipped for retry_timeout.
  static constexpr int failure_limit = 2;
  /// Connections per server: max(16, 2 x cores).
  static std::size_t pool_max() {
    return std::max<std::size_t>(16, 2 * std::max(1u, std::thread::hardware_concurrency()));
  }
};

/// Where the servers are and how long to wait for them: the typed form of the
/// configuration string (`--SERVER=host:port --POOL-MAX=16 ...`). Unset fields
/// keep StoreDefaults.
struct ServerOptions {
  /// "host:port" (or "host", port 11211), one per server. At least one.
  std::vector<std::string> servers;
  /// Connections in the pool; 0: the default. Have at least one per thread that
  /// uses the store at once.
  std::size_t pool_max = 0;
  /// 0: the default.
  std::chrono::milliseconds connect_timeout{0};
  /// Time to wait for an answer; 0: the default.
  std::chrono::milliseconds poll_timeout{0};
  /// Time before a failed server is tried again; 0: the default.
  std::chrono::seconds retry_timeout{0};
  /// More options in the configuration string syntax, appended as given.
  std::string extra;

  /// The configuration string these options stand for.
  std::string to_config() const {
    std::string c;
    for (const auto& s : servers) c += "--SERVER=" + s + " ";
    if (pool_max) c += "--POOL-MAX=" + std::to_string(pool_max) + " ";
    if (connect_timeout.count() > 0)
      c += "--CONNECT-TIMEOUT=" + std::to_string(connect_timeout.count()) + " ";
    if (poll_timeout.count() > 0)
      c += "--POLL-TIMEOUT=" + std::to_string(poll_timeout.count()) + " ";
    if (retry_timeout.count() > 0)
      c += "--RETRY-TIMEOUT=" + std::to_string(retry_timeout.count()) + " ";
    c += extra;
    while (!c.empty() && c.back() == ' ') c.pop_back();
    return c;
  }
};

}  // namespace cacheaside
