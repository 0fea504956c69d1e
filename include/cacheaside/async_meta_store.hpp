// cacheaside: AsyncMetaStore, memcached's meta protocol over Boost.Asio with one
// multiplexed connection per server. Component async (link cacheaside::async).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detail/async/meta_conn.hpp"
#include "detail/meta/config.hpp"
#include "detail/meta/op.hpp"
#include "detail/meta/ring.hpp"
#include "server_options.hpp"

namespace cacheaside {

namespace asio = boost::asio;

/// What an AsyncMetaStore has done so far.
struct AsyncMetaStoreStats {
  std::uint64_t writes = 0;    ///< socket writes (each carries every request queued meanwhile)
  std::uint64_t requests = 0;  ///< requests written
  std::uint64_t refused = 0;   ///< requests refused at once: the bound on queued ones was reached
  std::uint64_t connects = 0;  ///< connections opened
  std::uint64_t lost = 0;  ///< connections closed with requests on them (error, bad reply, silence)
  std::uint64_t timeouts = 0;  ///< requests failed by the poll timeout
};

/// Bounds of an AsyncMetaStore.
struct AsyncMetaStoreLimits {
  /// Requests queued or awaiting a reply, per connection; beyond it a request
  /// fails at once (`unavailable`, counted in `refused`) and its caller loads.
  std::size_t max_requests = 4096;
};

namespace detail {

class AsyncMetaCore : public std::enable_shared_from_this<AsyncMetaCore> {
 public:
  using Strand = AsyncMetaConn::Strand;

  AsyncMetaCore(asio::any_io_executor ex, const MetaConfig& c, AsyncMetaStoreLimits limits)
      : strand_(asio::make_strand(ex)),
        ring_(c.servers),
        poll_timeout_(c.poll_timeout),
        link_(MetaLinkSettings::from(c)) {
    MetaMuxLimits ml;
    ml.max_requests = limits.max_requests;
    std::size_t per_server = c.pool_max ? c.pool_max : 1;  // one, unless --POOL-MAX says more
    servers_.reserve(ring_.servers().size());
    for (const MetaServerAddress& a : ring_.servers()) {
      auto s = std::make_unique<Server>();
      s->health.failure_limit = c.failure_limit;
      s->health.retry_timeout = c.retry_timeout;
      for (std::size_t i = 0; i < per_server; ++i)
        s->conns.push_back(std::make_shared<AsyncMetaConn>(strand_, a, c.connect_timeout, ml, link_,
                                                           s->health, counters_));
      servers_.push_back(std::move(s));
    }
    pool_min_ = std::min(c.pool_min, per_server);
  }

  const Strand& strand() const { return strand_; }
  const MetaRing& ring() const { return ring_; }
  std::chrono::milliseconds poll_timeout() const { return poll_timeout_; }

  /// Opens --POOL-MIN connections per server (on the strand).
  void warm() {
    asio::dispatch(strand_, [self = shared_from_this()] {
      for (auto& s : self->servers_)
        for (std::size_t i = 0; i < self->pool_min_; ++i) s->conns[i]->warm();
    });
  }

  /// On the strand: sends each op to its server; the batch completes when all
  /// have their status.
  void start(MetaOp* ops, std::size_t n, AsyncMetaBatch* batch) {
    batch->left = n + 1;  // held until every op is queued
    auto now = std::chrono::steady_clock::now();
    auto deadline = now + poll_timeout_;
    for (std::size_t i = 0; i < n; ++i) {
      Server& s = *servers_[servers_.size() == 1 ? 0 : ring_.index_of(ops[i].key)];
      if (shut_ || s.health.skipped(now)) {
        ops[i].status = StoreStatus::unavailable;
        batch->one_done();
        continue;
      }
      if (!s.pick().submit(ops[i], batch, deadline)) {
        AsyncMetaCounters::add(counters_.refused);
        ops[i].status = StoreStatus::unavailable;
        batch->one_done();
      }
    }
    // From now on ops complete from the connections' handlers, not inside this call.
    if (batch->left > 1) batch->defer = false;
    batch->one_done();
  }

  /// Closes every connection; what is in flight fails.
  void shut() {
    asio::dispatch(strand_, [self = shared_from_this()] {
      self->shut_ = true;
      for (auto& s : self->servers_)
        for (auto& c : s->conns) c->shut(StoreStatus::unavailable);
    });
  }

  const MetaLinkStats& link_stats() const { return *link_.stats; }

  AsyncMetaStoreStats stats() const {
    auto r = [](const AsyncMetaCounters::N& n) { return n.load(std::memory_order_relaxed); };
    return {r(counters_.writes),   r(counters_.requests), r(counters_.refused),
            r(counters_.connects), r(counters_.lost),     r(counters_.timeouts)};
  }

 private:
  struct Server {
    AsyncMetaHealth health;
    std::vector<std::shared_ptr<AsyncMetaConn>> conns;
    std::size_t next = 0;
    // The least loaded connection, the next one on a tie.
    AsyncMetaConn& pick() {
      if (conns.size() == 1) return *conns[0];
      std::size_t best = next++ % conns.size();
      for (std::size_t i = 0; i < conns.size(); ++i)
        if (conns[i]->load() < conns[best]->load()) best = i;
      return *conns[best];
    }
  };

  Strand strand_;
  MetaRing ring_;
  std::chrono::milliseconds poll_timeout_;
  MetaLinkSettings link_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::size_t pool_min_ = 0;
  AsyncMetaCounters counters_;
  bool shut_ = false;
};

// A caller's handler, completed on its own executor once every op has a status.
template <class Handler>
class AsyncMetaBatchOp final : public AsyncMetaBatch {
 public:
  AsyncMetaBatchOp(Handler h, AsyncMetaCore::Strand strand)
      : handler_(std::move(h)), strand_(std::move(strand)) {}

 protected:
  void complete() override {
    Handler h = std::move(handler_);
    auto ex = asio::get_associated_executor(h, strand_);
    bool post = defer;
    delete this;  // before the handler runs: it may start the next batch
    if (post) {
      asio::post(ex, std::move(h));
    } else {
      asio::dispatch(ex, std::move(h));
    }
  }

 private:
  Handler handler_;
  // Not the core: a batch left in a connection of a stopped io_context must not
  // keep the core, and so that connection, alive.
  AsyncMetaCore::Strand strand_;
};

}  // namespace detail

class AsyncMetaStore;
namespace detail {
/// The configuration a store was made from, secrets included: for a twin MetaStore.
inline const std::string& unmasked_config(const AsyncMetaStore& store);
}  // namespace detail

/// memcached's meta protocol without blocking: every caller's requests to a
/// server share one connection (`--POOL-MAX=n`: n), queued requests go out in
/// one write, replies are matched in order and each is checked against its O
/// token. Same configuration strings, ketama mapping, keys and bytes as
/// MetaStore (a value one writes, the other reads), and the same failure rules:
/// a request gets its reply or fails within the poll timeout; a server whose
/// connects or connections fail `--SERVER-FAILURE-LIMIT` times in a row is
/// skipped for `--RETRY-TIMEOUT`; a connection that is lost fails the requests
/// written on it (their callers load) and sends the others on a new one; a
/// reply out of step closes its connection. Nothing here blocks a thread.
///
/// Thread-safe: calls may come from any thread; the connections run on a strand
/// of the executor given. Destroying the store fails what is in flight.
class AsyncMetaStore {
 public:
  /// The executor the connections run on (a strand of it).
  using executor_type = asio::any_io_executor;

  /// From a configuration string (see MetaStore). Throws Error for an unknown option.
  AsyncMetaStore(executor_type ex, const std::string& config, AsyncMetaStoreLimits limits = {})
      : config_(config),
        shown_config_(redact_config(config)),
        core_(std::make_shared<detail::AsyncMetaCore>(std::move(ex),
                                                      detail::MetaConfig::parse(config), limits)) {
    core_->warm();
  }

  /// From typed options; see ServerOptions.
  AsyncMetaStore(executor_type ex, const ServerOptions& options, AsyncMetaStoreLimits limits = {})
      : AsyncMetaStore(std::move(ex), options.to_config(), limits) {}

  AsyncMetaStore(const AsyncMetaStore&) = delete;
  AsyncMetaStore& operator=(const AsyncMetaStore&) = delete;
  ~AsyncMetaStore() { core_->shut(); }

  /// Closes every connection: requests in flight complete with `unavailable`
  /// (their callers load), later ones at once. Returns at once (the closing runs
  /// on the strand). A cache over a closed store keeps answering from its loader.
  void close() { core_->shut(); }

  /// The executor given (its strand runs the connections; callers' work runs here).
  executor_type get_executor() const { return core_->strand().get_inner_executor(); }

  /// The configuration string the store was made from, passwords masked
  /// (redact_config).
  const std::string& config() const { return shown_config_; }

  /// "host:port" of the server a key lives on.
  std::string server_of(std::string_view key) const {
    const auto& servers = core_->ring().servers();
    return servers[servers.size() == 1 ? 0 : core_->ring().index_of(key)].name();
  }

  /// Counters since construction: writes, requests, refusals, connects, losses, timeouts.
  AsyncMetaStoreStats stats() const { return core_->stats(); }

  /// What connections went through before their first request: TLS handshakes
  /// completed, and set-ups refused (TLS, authentication) with the last reason.
  ConnectionStats connection_stats() const { return core_->link_stats().snapshot(); }

  /// Runs a batch of meta commands: every op gets a status, then the token's
  /// handler runs with `void()` on its own executor (never inside this call).
  /// ops (their keys, values and items) must stay valid until then. The default
  /// token is `deferred`.
  template <class Token = asio::deferred_t>
  auto async_execute(detail::MetaOp* ops, std::size_t n, Token&& token = {}) {
    return asio::async_initiate<Token, void()>(
        [core = core_](auto handler, detail::MetaOp* ops, std::size_t n) {
          using H = decltype(handler);
          // Owned here until started: an io_context that never runs it destroys it.
          std::unique_ptr<detail::AsyncMetaBatch> b(
              new detail::AsyncMetaBatchOp<H>(std::move(handler), core->strand()));
          asio::dispatch(core->strand(), [core, b = std::move(b), ops, n]() mutable {
            core->start(ops, n, b.release());
          });
        },
        token, ops, n);
  }

  /// The shared part, for the async cache (internal).
  const std::shared_ptr<detail::AsyncMetaCore>& core() const { return core_; }

 private:
  friend const std::string& detail::unmasked_config(const AsyncMetaStore&);
  std::string config_;  // with its secrets: a twin store is made from it
  std::string shown_config_;
  std::shared_ptr<detail::AsyncMetaCore> core_;
};

namespace detail {
inline const std::string& unmasked_config(const AsyncMetaStore& store) { return store.config_; }
}  // namespace detail

}  // namespace cacheaside
