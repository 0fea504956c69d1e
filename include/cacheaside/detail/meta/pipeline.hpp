// Runs batches of meta commands over blocking pooled connections (internal):
// per server involved, one write carrying all its requests and one read of all
// its replies, matched in order and by O token, within the poll timeout.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "command.hpp"
#include "config.hpp"
#include "link.hpp"
#include "op.hpp"
#include "pool.hpp"
#include "reply.hpp"
#include "ring.hpp"

namespace cacheaside::detail {

class MetaPipeline {
 public:
  /// Throws Error if libmemcached rejects the servers.
  explicit MetaPipeline(const MetaConfig& c) : ring_(c.servers), poll_timeout_(c.poll_timeout) {
    MetaPoolSettings s;
    s.pool_max = c.pool_max ? c.pool_max : StoreDefaults::pool_max();
    s.connect_timeout = c.connect_timeout;
    s.retry_timeout = c.retry_timeout;
    s.failure_limit = c.failure_limit;
    s.link = MetaLinkSettings::from(c);
    link_stats_ = s.link.stats;
    for (const auto& a : ring_.servers())
      servers_.push_back(std::make_unique<MetaServer>(a, s, pool_waiters_));
    // --POOL-MIN: connections opened now, so the pool does not grow under load later.
    for (auto& srv : servers_) srv->open_idle(c.pool_min);
  }

  const MetaServerAddress& server_of(std::string_view key) const {
    return servers_[ring_.index_of(key)]->address();
  }

  int pool_waiters() const { return pool_waiters_.load(std::memory_order_relaxed); }

  /// Handshakes and set-up failures of every connection.
  const MetaLinkStats& link_stats() const { return *link_stats_; }

  /// Every op gets a status. Never throws for I/O.
  void execute(MetaOp* ops, std::size_t n) {
    if (n == 0) return;
    for (std::size_t i = 0; i < n; ++i) ops[i].why = nullptr;
    Time pool_deadline = std::chrono::steady_clock::now() + poll_timeout_;
    if (servers_.size() == 1 || n == 1) {
      Group g;
      g.server = servers_[n == 1 ? ring_.index_of(ops[0].key) : 0].get();
      send(g, ops, n, nullptr, pool_deadline);
      receive(g, ops, n, nullptr, pool_deadline);
      return;
    }
    std::vector<Group> groups(servers_.size());
    for (std::size_t i = 0; i < n; ++i) groups[ring_.index_of(ops[i].key)].idx.push_back(i);
    for (std::size_t s = 0; s < groups.size(); ++s) {
      groups[s].server = servers_[s].get();
      if (!groups[s].idx.empty())
        send(groups[s], ops, groups[s].idx.size(), groups[s].idx.data(), pool_deadline);
    }
    for (Group& g : groups)
      if (!g.idx.empty()) receive(g, ops, g.idx.size(), g.idx.data(), pool_deadline);
  }

 private:
  using Time = std::chrono::steady_clock::time_point;

  // The ops of one server in one call.
  struct Group {
    MetaServer* server = nullptr;
    std::vector<std::size_t> idx;  // empty: ops 0..n-1
    MetaLease lease;
    Time deadline;            // for the server's replies
    std::size_t written = 0;  // ops written so far (a TLS window at a time)
    bool retried = false;
  };

  static std::size_t at(const std::size_t* idx, std::size_t k) { return idx ? idx[k] : k; }

  // Writes the group's requests; on failure every op of the group has its status.
  void send(Group& g, MetaOp* ops, std::size_t n, const std::size_t* idx, Time pool_deadline) {
    StoreStatus st = StoreStatus::ok;
    g.lease = g.server->acquire(pool_deadline, st);
    if (!g.lease.conn) return fail_all(g, ops, n, idx, st);
    g.deadline = std::chrono::steady_clock::now() + poll_timeout_;
    g.written = 0;
    st = write_more(g, ops, n, idx);
    if (st == StoreStatus::ok) return;
    if (retry_on_fresh(g)) return send(g, ops, n, idx, pool_deadline);
    fail_all(g, ops, n, idx, st);
  }

  // Writes the next ops: all of them, or over TLS a window's worth (at least one).
  static StoreStatus write_more(Group& g, MetaOp* ops, std::size_t n, const std::size_t* idx) {
    MetaConnection& c = *g.lease.conn;
    std::size_t window = c.write_window();
    std::size_t k = g.written;
    do {
      encode_meta_op(c.out, ops[at(idx, k)], at(idx, k));
      ops[at(idx, k)].sent = true;  // a failed flush may still have written part
    } while (++k < n && c.out.size() < window);
    g.written = k;
    return c.flush(g.deadline);
  }

  // Reads the group's replies in order and gives the connection back.
  void receive(Group& g, MetaOp* ops, std::size_t n, const std::size_t* idx, Time pool_deadline) {
    if (!g.lease.conn) return;  // send failed them all
    MetaConnection& c = *g.lease.conn;
    c.reset_received();
    bool ok = true;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = at(idx, k);
      StoreStatus st = read_reply(c, ops[i], i, g.deadline);
      if (!c.broken() && k + 1 == g.written && k + 1 < n) {  // the next window
        StoreStatus w = write_more(g, ops, n, idx);
        if (c.broken()) {
          for (std::size_t r = k + 1; r < n; ++r) ops[at(idx, r)].status = w;
          ok = false;
          break;
        }
      }
      if (!c.broken()) continue;
      if (k == 0 && retry_on_fresh(g)) {
        send(g, ops, n, idx, pool_deadline);
        return receive(g, ops, n, idx, pool_deadline);
      }
      ops[i].status = st;
      for (std::size_t r = k + 1; r < n; ++r) ops[at(idx, r)].status = st;
      ok = false;
      break;
    }
    g.server->release(std::move(g.lease.conn));
    ok ? g.server->succeeded() : g.server->failed();
  }

  // A pooled connection the server closed while it sat idle (a restart): once,
  // try again on a new one, and drop the other idle ones (likely dead too).
  bool retry_on_fresh(Group& g) {
    MetaConnection* c = g.lease.conn.get();
    bool stale = g.lease.reused && !g.retried && c && c->closed_by_peer() && !c->received();
    g.server->release(std::move(g.lease.conn));
    if (!stale) return false;
    g.retried = true;
    g.server->drop_idle();
    return true;
  }

  void fail_all(Group& g, MetaOp* ops, std::size_t n, const std::size_t* idx, StoreStatus st) {
    for (std::size_t k = 0; k < n; ++k) {
      ops[at(idx, k)].status = st;
      ops[at(idx, k)].why = g.lease.why;
    }
    if (g.lease.conn) g.server->release(std::move(g.lease.conn));
    if (!g.lease.pool_full && !g.server->skipped()) g.server->failed();
  }

  // One reply: the op's status. A reply out of step poisons the connection.
  static StoreStatus read_reply(MetaConnection& c, MetaOp& op, std::size_t opaque, Time deadline) {
    std::string_view line;
    StoreStatus st = c.read_line(line, deadline);
    if (st != StoreStatus::ok) return op.status = st;
    MetaReply r;
    MetaNext next = parse_meta_reply(line, r) ? meta_reply_line(r, op, opaque) : MetaNext::broken;
    if (next == MetaNext::value) {
      std::string digits;
      std::string& into = op.cmd == MetaCmd::get ? op.item->value : digits;
      st = c.read_value(r.size, into, deadline);
      if (st != StoreStatus::ok) return op.status = st;
      next = meta_reply_value(r, into, op);
    }
    if (next == MetaNext::broken) {
      c.poison();
      return op.status = StoreStatus::error;
    }
    return op.status;
  }

  MetaRing ring_;
  std::shared_ptr<MetaLinkStats> link_stats_;
  std::atomic<int> pool_waiters_{0};
  std::vector<std::unique_ptr<MetaServer>> servers_;
  std::chrono::milliseconds poll_timeout_;
};

}  // namespace cacheaside::detail
