// What the outbox relay did, for /metrics: one relay per process.
#pragma once

#include <atomic>
#include <cstdint>
#include <sstream>
#include <string>

namespace user_service {

struct OutboxCounters {
  std::atomic<long long> rows{-1};        ///< outbox rows after the relay's last pass; -1: no relay
  std::atomic<std::uint64_t> relayed{0};  ///< rows invalidated, confirmed and removed
  std::atomic<std::uint64_t> unconfirmed{0};    ///< rows memcached did not confirm (kept)
  std::atomic<std::uint64_t> failed_passes{0};  ///< passes the database failed

  static OutboxCounters& instance() {
    static OutboxCounters c;
    return c;
  }

  /// Prometheus text; empty without a relay.
  std::string metrics() const {
    long long n = rows.load();
    if (n < 0) return "";
    std::ostringstream out;
    auto line = [&](const char* name, const char* type, const char* help, auto v) {
      out << "# HELP user_service_outbox_" << name << " " << help << "\n"
          << "# TYPE user_service_outbox_" << name << " " << type << "\n"
          << "user_service_outbox_" << name << " " << v << "\n";
    };
    line("rows", "gauge", "rows in the outbox after the relay's last pass", n);
    line("relayed_total", "counter", "outbox rows invalidated and removed", relayed.load());
    line("unconfirmed_total", "counter", "outbox rows memcached did not confirm (kept)",
         unconfirmed.load());
    line("failed_passes_total", "counter", "relay passes the database failed",
         failed_passes.load());
    return out.str();
  }
};

}  // namespace user_service
