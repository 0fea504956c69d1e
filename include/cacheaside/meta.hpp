// cacheaside: MetaStore, a Store that speaks memcached's meta protocol over its
// own connection pool. Needs libmemcached >= 1.1.4 (Debian: libmemcached-dev)
// for ketama only; link cacheaside::meta.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "detail/meta_config.hpp"
#include "detail/meta_connection.hpp"
#include "detail/meta_op.hpp"
#include "detail/meta_protocol.hpp"
#include "detail/meta_reply.hpp"
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
/// `--SERVER-FAILURE-LIMIT`, `--TCP-NODELAY`, `--DISTRIBUTION=consistent`; the
/// constructor throws `cacheaside::Error` for anything else. Defaults as
/// MemcachedStore's: connect 200 ms, poll 100 ms, retry 1 s, failure limit 2,
/// pool max(16, 2 x cores). Several servers: keys go to the same server as
/// under MemcachedStore (libmemcached's ketama), so the two can share a cluster.
///
/// Failure behaviour: every call is bounded: at most the poll timeout for a
/// free connection, the connect timeout for a new one, and the poll timeout for
/// all of the server's replies to the call (one pipeline per server). A
/// server that fails `failure limit` calls in a row is skipped (unavailable) for
/// the retry timeout; its keys are not moved to other servers. A reply that
/// does not parse, or answers another request, closes its connection. Never
/// throws for I/O.
class MetaStore : public Store, public LookupProtocolSource, public detail::MetaExecutor {
 public:
  /// From typed options; see ServerOptions.
  explicit MetaStore(const ServerOptions& options) : MetaStore(options.to_config()) {}

  /// From a configuration string ("host:port" alone is accepted too).
  explicit MetaStore(const std::string& config) : config_(config) {
    detail::MetaConfig c = detail::MetaConfig::parse(config);
    connect_timeout_ = c.connect_timeout;
    poll_timeout_ = c.poll_timeout;
    retry_timeout_ = c.retry_timeout;
    failure_limit_ = c.failure_limit;
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    pool_max_ = c.pool_max ? c.pool_max : std::max<std::size_t>(16, 2 * cores);
    if (c.servers.size() > 1) {
      // libmemcached builds the continuum: the same one MemcachedStore gets.
      std::string spec = "--DISTRIBUTION=consistent";
      for (const auto& s : c.servers) spec += " --SERVER=" + s.spec;
      ketama_ = memcached(spec.data(), spec.size());
      if (!ketama_ || memcached_server_count(ketama_) != c.servers.size()) {
        if (ketama_) memcached_free(ketama_);
        throw Error("cacheaside: libmemcached rejects the servers of '" + config + "'");
      }
      for (std::uint32_t i = 0; i < c.servers.size(); ++i) {
        const memcached_instance_st* in = memcached_server_instance_by_position(ketama_, i);
        detail::MetaServerAddress a;
        a.host = memcached_server_name(in);
        a.port = static_cast<std::uint16_t>(memcached_server_port(in));
        servers_.push_back(std::make_unique<Server>(a));
      }
    } else {
      servers_.push_back(std::make_unique<Server>(c.servers.front()));
    }
    // --POOL-MIN: connections opened now, so the pool does not grow under load later
    // (a server that refuses or does not answer is left for the first call).
    std::size_t want = std::min(c.pool_min, pool_max_);
    for (auto& s : servers_) {
      for (std::size_t i = 0; i < want; ++i) {
        StoreStatus st = StoreStatus::ok;
        std::unique_ptr<Conn> conn = Conn::open(s->address.host, s->port, connect_timeout_, st);
        if (!conn) break;
        s->idle.push_back(std::move(conn));
        ++s->open;
      }
    }
  }

  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  ~MetaStore() override {
    if (ketama_) memcached_free(ketama_);
  }

  /// The configuration string as given.
  const std::string& config() const { return config_; }

  /// Callers waiting for a free pooled connection now (a gauge of pool contention:
  /// each waits at most the poll timeout).
  int pool_waiters() const { return pool_waiters_.load(std::memory_order_relaxed); }

  /// "host:port" of the server a key lives on.
  std::string server_of(std::string_view key) const {
    const auto& a = servers_[index_of(key)]->address;
    return a.host + ":" + std::to_string(a.port);
  }

  StoreStatus get(std::string_view key, StoreItem& item) override {
    detail::MetaOp op;
    op.key = key;
    op.item = &item;
    execute(&op, 1);
    return op.status;
  }

  StoreStatus get_multi(const std::vector<std::string>& keys, std::vector<StoreItem>& items,
                        std::vector<char>& found) override {
    items.resize(keys.size());
    found.assign(keys.size(), 0);
    if (keys.empty()) return StoreStatus::ok;
    std::vector<detail::MetaOp> ops(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      ops[i].key = keys[i];
      ops[i].item = &items[i];
    }
    execute(ops.data(), ops.size());
    StoreStatus failure = StoreStatus::ok;
    bool any = false;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (ops[i].status == StoreStatus::ok) {
        found[i] = 1;
        any = true;
      } else if (ops[i].status == StoreStatus::not_found) {
        any = true;
      } else {
        failure = ops[i].status;
      }
    }
    // Partial answers (one server of several down) are still used.
    return any || failure == StoreStatus::ok ? StoreStatus::ok : failure;
  }

  StoreStatus set(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    return store(detail::MetaCmd::set, key, value, flags, exptime, 0);
  }

  StoreStatus add(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    return store(detail::MetaCmd::add, key, value, flags, exptime, 0);
  }

  StoreStatus cas(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime, std::uint64_t cas_id) override {
    return store(detail::MetaCmd::cas, key, value, flags, exptime, cas_id);
  }

  StoreStatus remove(std::string_view key) override {
    detail::MetaOp op;
    op.cmd = detail::MetaCmd::remove;
    op.key = key;
    execute(&op, 1);
    return op.status;
  }

  StoreStatus incr(std::string_view key, std::uint64_t delta, std::uint64_t initial,
                   Exptime exptime, std::uint64_t& value) override {
    detail::MetaOp op;
    op.cmd = detail::MetaCmd::incr;
    op.key = key;
    op.delta = delta;
    op.initial = initial;
    op.exptime = exptime;
    execute(&op, 1);
    if (op.status == StoreStatus::ok) value = op.number;
    return op.status;
  }

  /// The meta protocol's lookups, for one cache (see the class comment).
  std::unique_ptr<LookupProtocol> make_lookup_protocol(LookupPolicy policy) override {
    return std::make_unique<detail::MetaProtocol>(*this, std::move(policy));
  }

  /// Runs ops: one write and one read per server involved.
  void execute(detail::MetaOp* ops, std::size_t n) override {
    if (n == 0) return;
    Batch b{std::chrono::steady_clock::now() + poll_timeout_};
    if (servers_.size() == 1 || n == 1) {
      Group g;
      g.server = servers_[n == 1 ? index_of(ops[0].key) : 0].get();
      send(g, ops, n, nullptr, b);
      receive(g, ops, n, nullptr, b);
      return;
    }
    std::vector<Group> groups(servers_.size());
    for (std::size_t i = 0; i < n; ++i) groups[index_of(ops[i].key)].idx.push_back(i);
    for (std::size_t s = 0; s < groups.size(); ++s) {
      groups[s].server = servers_[s].get();
      if (!groups[s].idx.empty())
        send(groups[s], ops, groups[s].idx.size(), groups[s].idx.data(), b);
    }
    for (Group& g : groups)
      if (!g.idx.empty()) receive(g, ops, g.idx.size(), g.idx.data(), b);
  }

 private:
  using Conn = detail::MetaConnection;
  using Time = std::chrono::steady_clock::time_point;

  struct Server {
    explicit Server(detail::MetaServerAddress a)
        : address(std::move(a)), port(std::to_string(address.port)) {}
    detail::MetaServerAddress address;
    std::string port;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::unique_ptr<Conn>> idle;
    std::size_t open = 0;                     // idle + in use
    std::atomic<int> failures{0};             // calls failed in a row
    std::atomic<std::int64_t> dead_until{0};  // steady ns; skipped until then
  };

  struct Batch {
    Time pool_deadline;  // a free connection
  };

  // The ops of one server in one call.
  struct Group {
    Server* server = nullptr;
    std::vector<std::size_t> idx;  // empty: ops 0..n-1
    std::unique_ptr<Conn> conn;
    Time deadline;        // for the server's replies
    bool reused = false;  // from the pool: it may have died while idle
    bool retried = false;
    bool pool_full = false;  // no connection was free: not the server's failure
  };

  static std::size_t at(const std::size_t* idx, std::size_t k) { return idx ? idx[k] : k; }

  std::size_t index_of(std::string_view key) const {
    if (!ketama_) return 0;
    std::uint32_t i = memcached_generate_hash(ketama_, key.data(), key.size());
    return i < servers_.size() ? i : 0;
  }

  StoreStatus store(detail::MetaCmd cmd, std::string_view key, std::string_view value,
                    std::uint32_t flags, Exptime exptime, std::uint64_t cas_id) {
    detail::MetaOp op;
    op.cmd = cmd;
    op.key = key;
    op.value = value;
    op.flags = flags;
    op.exptime = exptime;
    op.cas = cas_id;
    execute(&op, 1);
    return op.status;
  }

  // Writes the group's requests; on failure every op of the group has its status.
  void send(Group& g, detail::MetaOp* ops, std::size_t n, const std::size_t* idx, const Batch& b) {
    StoreStatus st = StoreStatus::ok;
    g.conn = acquire(g, b.pool_deadline, st);
    if (!g.conn) return fail_all(g, ops, n, idx, st);
    g.deadline = std::chrono::steady_clock::now() + poll_timeout_;
    for (std::size_t k = 0; k < n; ++k) encode(g.conn->out, ops[at(idx, k)], at(idx, k));
    st = g.conn->flush(g.deadline);
    if (st == StoreStatus::ok) return;
    if (retry_on_fresh(g)) return send(g, ops, n, idx, b);
    fail_all(g, ops, n, idx, st);
  }

  // Reads the group's replies in order and gives the connection back.
  void receive(Group& g, detail::MetaOp* ops, std::size_t n, const std::size_t* idx,
               const Batch& b) {
    if (!g.conn) return;  // send failed them all
    g.conn->reset_received();
    bool ok = true;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = at(idx, k);
      StoreStatus st = read_reply(*g.conn, ops[i], i, g.deadline);
      if (!g.conn->broken()) continue;
      if (k == 0 && retry_on_fresh(g)) {
        send(g, ops, n, idx, b);
        return receive(g, ops, n, idx, b);
      }
      ops[i].status = st;
      for (std::size_t r = k + 1; r < n; ++r) ops[at(idx, r)].status = st;
      ok = false;
      break;
    }
    release(*g.server, std::move(g.conn));
    ok ? succeeded(*g.server) : failed(*g.server);
  }

  // A pooled connection the server closed while it sat idle (a restart): once,
  // try again on a new one, and drop the other idle ones (likely dead too).
  bool retry_on_fresh(Group& g) {
    bool stale =
        g.reused && !g.retried && g.conn && g.conn->closed_by_peer() && !g.conn->received();
    release(*g.server, std::move(g.conn));
    if (!stale) return false;
    g.retried = true;
    drop_idle(*g.server);
    return true;
  }

  void fail_all(Group& g, detail::MetaOp* ops, std::size_t n, const std::size_t* idx,
                StoreStatus st) {
    for (std::size_t k = 0; k < n; ++k) ops[at(idx, k)].status = st;
    if (g.conn) release(*g.server, std::move(g.conn));
    if (!g.pool_full && !skipped(*g.server)) failed(*g.server);
  }

  bool skipped(const Server& s) const {
    return now_ns() < s.dead_until.load(std::memory_order_relaxed);
  }

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void succeeded(Server& s) {
    if (s.failures.load(std::memory_order_relaxed) != 0) s.failures.store(0);
  }

  void failed(Server& s) {
    if (s.failures.fetch_add(1) + 1 < failure_limit_) return;
    s.failures.store(0);
    s.dead_until.store(
        now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(retry_timeout_).count());
    drop_idle(s);
  }

  void drop_idle(Server& s) {
    std::vector<std::unique_ptr<Conn>> gone;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      gone.swap(s.idle);
      s.open -= gone.size();
    }
    s.cv.notify_all();
  }

  std::unique_ptr<Conn> acquire(Group& g, Time pool_deadline, StoreStatus& st) {
    Server& s = *g.server;
    std::unique_lock<std::mutex> lock(s.mu);
    for (;;) {
      if (skipped(s)) {
        st = StoreStatus::unavailable;
        return nullptr;
      }
      if (!s.idle.empty()) {
        std::unique_ptr<Conn> c = std::move(s.idle.back());
        s.idle.pop_back();
        g.reused = true;
        return c;
      }
      if (s.open < pool_max_) {
        ++s.open;
        lock.unlock();
        std::unique_ptr<Conn> c = Conn::open(s.address.host, s.port, connect_timeout_, st);
        if (!c) {
          lock.lock();
          --s.open;
          s.cv.notify_one();
        }
        g.reused = false;
        return c;
      }
      pool_waiters_.fetch_add(1, std::memory_order_relaxed);
      bool timed_out = s.cv.wait_until(lock, pool_deadline) == std::cv_status::timeout;
      pool_waiters_.fetch_sub(1, std::memory_order_relaxed);
      if (timed_out) {
        st = StoreStatus::unavailable;  // no connection free in the pool
        g.pool_full = true;
        return nullptr;
      }
    }
  }

  void release(Server& s, std::unique_ptr<Conn> c) {
    if (!c) return;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      if (c->clean()) {
        s.idle.push_back(std::move(c));
      } else {
        --s.open;
      }
    }
    s.cv.notify_one();
    // a connection not clean closes here, outside the lock
  }

  template <class T>
  static void put_number(std::string& out, T v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }

  static void encode(std::string& out, const detail::MetaOp& op, std::size_t opaque) {
    using detail::MetaCmd;
    switch (op.cmd) {
      case MetaCmd::get:
        out.append("mg ").append(op.key).append(" v f c");
        if (op.vivify) {
          out.append(" N");
          put_number(out, op.vivify);
        }
        break;
      case MetaCmd::set:
      case MetaCmd::add:
      case MetaCmd::cas:
        out.append("ms ").append(op.key).append(" ");
        put_number(out, op.value.size());
        out.append(" F");
        put_number(out, op.flags);
        out.append(" T");
        put_number(out, op.exptime);
        if (op.cmd == MetaCmd::add) out.append(" ME");
        if (op.cmd == MetaCmd::cas) {
          out.append(" C");
          put_number(out, op.cas);
        }
        break;
      case MetaCmd::remove:
        out.append("md ").append(op.key);
        if (op.cas) {
          out.append(" C");
          put_number(out, op.cas);
        }
        if (op.invalidate) {
          out.append(" I");
          if (op.exptime) {
            out.append(" T");
            put_number(out, op.exptime);
          }
        }
        break;
      case MetaCmd::incr:
        out.append("ma ").append(op.key).append(" N");
        put_number(out, op.exptime);
        out.append(" J");
        put_number(out, op.initial);
        out.append(" D");
        put_number(out, op.delta);
        out.append(" v");
        break;
    }
    out.append(" O");
    put_number(out, opaque);
    out.append("\r\n");
    if (op.cmd == MetaCmd::set || op.cmd == MetaCmd::add || op.cmd == MetaCmd::cas)
      out.append(op.value).append("\r\n");
  }

  // One reply: the op's status. A reply out of step poisons the connection.
  static StoreStatus read_reply(Conn& c, detail::MetaOp& op, std::size_t opaque, Time deadline) {
    using detail::MetaCmd;
    using detail::MetaCode;
    std::string_view line;
    StoreStatus st = c.read_line(line, deadline);
    if (st != StoreStatus::ok) return op.status = st;
    detail::MetaReply r;
    auto broken = [&] {
      c.poison();
      return op.status = StoreStatus::error;
    };
    if (!detail::parse_meta_reply(line, r)) return broken();
    bool storing = op.cmd == MetaCmd::set || op.cmd == MetaCmd::add || op.cmd == MetaCmd::cas;
    if (r.code == MetaCode::server_error) {
      // The server answered this request and stays in step (it skips a refused value).
      bool big = r.message.find("too large") != std::string_view::npos;
      return op.status = storing && big ? StoreStatus::too_large : StoreStatus::error;
    }
    if (r.code == MetaCode::error || r.code == MetaCode::client_error || r.code == MetaCode::mn)
      return broken();
    if (!r.has_opaque || r.opaque != opaque) return broken();  // another request's reply
    switch (op.cmd) {
      case MetaCmd::get:
        if (r.code == MetaCode::en) return op.status = StoreStatus::not_found;
        if (r.code != MetaCode::va) return broken();
        st = c.read_value(r.size, op.item->value, deadline);
        if (st != StoreStatus::ok) return op.status = st;
        op.item->flags = r.flags;
        op.item->cas = r.cas;
        op.won = r.won;
        op.claimed = r.claimed;
        op.stale = r.stale;
        return op.status = StoreStatus::ok;
      case MetaCmd::incr: {
        if (r.code == MetaCode::nf) return op.status = StoreStatus::not_found;
        if (r.code != MetaCode::va || r.size > 20) return broken();
        std::string digits;
        st = c.read_value(r.size, digits, deadline);
        if (st != StoreStatus::ok) return op.status = st;
        auto res = std::from_chars(digits.data(), digits.data() + digits.size(), op.number);
        if (res.ec != std::errc() || res.ptr != digits.data() + digits.size()) return broken();
        return op.status = StoreStatus::ok;
      }
      case MetaCmd::set:
      case MetaCmd::add:
      case MetaCmd::cas:
      case MetaCmd::remove:
        switch (r.code) {
          case MetaCode::hd:
            return op.status = StoreStatus::ok;
          case MetaCode::ns:
            return op.status = StoreStatus::not_stored;
          case MetaCode::ex:
            return op.status = StoreStatus::exists;
          case MetaCode::nf:
            return op.status = StoreStatus::not_found;
          default:
            return broken();
        }
    }
    return broken();
  }

  std::string config_;
  std::vector<std::unique_ptr<Server>> servers_;
  memcached_st* ketama_ = nullptr;  // several servers: the continuum (read only)
  std::size_t pool_max_ = 16;
  std::atomic<int> pool_waiters_{0};
  std::chrono::milliseconds connect_timeout_{200};
  std::chrono::milliseconds poll_timeout_{100};
  std::chrono::seconds retry_timeout_{1};
  int failure_limit_ = 2;
};

}  // namespace cacheaside
