// cacheaside: MetaStore, a Store that speaks memcached's meta protocol over its
// own connection pool. Needs libmemcached >= 1.1.4 (Debian: libmemcached-dev)
// for ketama only; link cacheaside::meta.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detail/lookup/meta_protocol.hpp"
#include "detail/meta/command_store.hpp"
#include "detail/meta/config.hpp"
#include "detail/meta/op.hpp"
#include "detail/meta/pipeline.hpp"
#include "error.hpp"
#include "protocol.hpp"
#include "server_options.hpp"
#include "store.hpp"

namespace cacheaside {

/// A thread-safe Store over memcached's meta protocol (memcached >= 1.6).
///
/// Under a CacheAside it also brings its own lookups: a miss takes its lease in
/// the read itself (`mg ... N`, the server's placeholder) and stores with
/// `ms ... C`, so a cold get costs 2 round trips instead of 4, and a get_many
/// of any size 2 (one pipelined write and read each way), plus the loader.
///
/// Takes the same configuration strings as MemcachedStore for what it supports:
/// `--SERVER=host:port` (repeated), `--POOL-MAX` (connections per server),
/// `--POOL-MIN` (connections opened by the constructor, per server),
/// `--CONNECT-TIMEOUT` (ms), `--POLL-TIMEOUT` (ms), `--RETRY-TIMEOUT` (s),
/// `--TCP-NODELAY`, `--DISTRIBUTION=consistent`; and options of its own:
/// `--SERVER-FAILURE-LIMIT`, the TLS and authentication options (docs/security.md).
/// The constructor throws `cacheaside::Error` for anything else, and for
/// contradictions (`--TLS-INSECURE-NO-VERIFY` beside `--TLS-CA`, ...). Defaults:
/// StoreDefaults, as MemcachedStore's. Several servers: keys go to the same server as
/// under MemcachedStore (libmemcached's ketama), so the two can share a cluster.
///
/// Failure behaviour: every call is bounded: at most the poll timeout for a
/// free connection, the connect timeout for a new one, and the poll timeout for
/// all of the server's replies to the call (one pipeline per server). A
/// server that fails `failure limit` calls in a row is skipped (unavailable) for
/// the retry timeout; its keys are not moved to other servers. A reply that
/// does not parse, or answers another request, closes its connection. Never
/// throws for I/O.
class MetaStore : public detail::MetaCommandStore, public LookupProtocolSource {
 public:
  /// From typed options; see ServerOptions.
  explicit MetaStore(const ServerOptions& options) : MetaStore(options.to_config()) {}

  /// From a configuration string ("host:port" alone is accepted too).
  explicit MetaStore(const std::string& config)
      : config_(redact_config(config)), pipeline_(detail::MetaConfig::parse(config)) {}

  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  /// The configuration string as given, passwords masked (redact_config).
  const std::string& config() const { return config_; }

  /// Callers waiting for a free pooled connection now (a gauge of pool contention:
  /// each waits at most the poll timeout).
  int pool_waiters() const { return pipeline_.pool_waiters(); }

  /// What connections went through before their first request: TLS handshakes
  /// completed, and set-ups refused (TLS, authentication) with the last reason.
  ConnectionStats connection_stats() const { return pipeline_.link_stats().snapshot(); }

  /// "host:port" of the server a key lives on.
  std::string server_of(std::string_view key) const { return pipeline_.server_of(key).name(); }

  /// The meta protocol's lookups, for one cache (see the class comment).
  std::unique_ptr<LookupProtocol> make_lookup_protocol(LookupPolicy policy) override {
    return std::make_unique<detail::MetaProtocol>(*this, std::move(policy));
  }

  /// Runs ops: one write and one read per server involved.
  void execute(detail::MetaOp* ops, std::size_t n) override { pipeline_.execute(ops, n); }

 private:
  std::string config_;
  detail::MetaPipeline pipeline_;
};

}  // namespace cacheaside
