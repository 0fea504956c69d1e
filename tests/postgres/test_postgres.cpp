// The PostgreSQL hooks against a real PostgreSQL cluster and a real memcached, both
// started by the test process: the install SQL (idempotent; inserts, updates, key
// moves and deletes recorded in the writer's transaction, nothing on rollback), and
// OutboxRelay over PgOutbox (rows removed once memcached confirmed them, kept while
// it does not, NOTIFY waking it long before its backstop, several relays sharing one
// outbox, a terminated session replaced and drained).
#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/meta.hpp>
#include <cacheaside/outbox_relay.hpp>
#include <cacheaside/postgres.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/fault_proxy.hpp"
#include "support/memcached_process.hpp"
#include "support/postgres_process.hpp"
#include "support/processes.hpp"

using namespace cacheaside;
using namespace cacheaside_test;
namespace asio = boost::asio;
using Steady = std::chrono::steady_clock;

namespace {

PostgresProcess& pg() {
  static PostgresProcess cluster;  // one per test process: initdb once
  return cluster;
}

// A fresh database per test: no test sees another's rows.
std::string fresh_database() {
  static int n = 0;
  std::string db = "t" + std::to_string(++n);
  pg().exec("DROP DATABASE IF EXISTS " + db);
  pg().exec("CREATE DATABASE " + db);
  return db;
}

// A session on one database (blocking: the test's own writes).
struct Db {
  std::string name = fresh_database();
  PGconn* c = PQconnectdb(conninfo().c_str());
  Db() {
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);  // "... skipping"
    exec("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)");
  }
  ~Db() { PQfinish(c); }
  std::string conninfo(const std::string& extra = "") const {
    return pg().conninfo("dbname=" + name + (extra.empty() ? "" : " " + extra));
  }
  std::vector<std::vector<std::string>> exec(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    std::string err = PQresultErrorMessage(r);
    std::vector<std::vector<std::string>> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
      rows.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) rows.back().emplace_back(PQgetvalue(r, i, j));
    }
    PQclear(r);
    INFO(sql << ": " << err);
    REQUIRE((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK));
    return rows;
  }
  // The outbox as "table:key" in order.
  std::vector<std::string> outbox() {
    std::vector<std::string> out;
    for (auto& r : exec("SELECT source_table, key FROM cacheaside_outbox ORDER BY id"))
      out.push_back(r[0] + ":" + r[1]);
    return out;
  }
  std::size_t depth() { return std::stoul(exec("SELECT count(*) FROM cacheaside_outbox")[0][0]); }
};

// Runs io until done() holds, or fails after `limit`.
template <class Pred>
void run_until(asio::io_context& io, Pred done,
               std::chrono::seconds limit = std::chrono::seconds(20)) {
  auto end = Steady::now() + limit;
  io.restart();
  while (!done() && Steady::now() < end) io.run_for(std::chrono::milliseconds(10));
  REQUIRE(done());
}

// memcached, the caches the users table feeds (user_<id>, users_all) and a fanout.
struct Caches {
  MemcachedProcess mc;
  asio::io_context io;
  std::shared_ptr<AsyncMetaStore> store =
      std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  MetaStore direct{mc.config()};  // the test's own view of memcached
  Options by_id_options() {
    Options o;
    o.key_prefix = "user_";
    return o;
  }
  AsyncCacheAside<std::string, std::string, StringSerializer> by_id{
      store, [](const std::string& k, LoadHandler<std::string> h) { h(nullptr, "row " + k); },
      by_id_options()};
  AsyncCacheAside<std::string, std::string, StringSerializer> lists{
      store, [](const std::string&, LoadHandler<std::string> h) { h(nullptr, "all"); }, Options{}};
  AsyncInvalidationFanout<PgChange> fanout{by_id, [](const PgChange& c) { return c.key; }};
  Caches() {
    fanout.add(lists, [](const PgChange&) { return std::string("users_all"); });
  }
  // A reply memcached sent after the test had what it waited for is read before the
  // io_context goes (an operation in flight would outlive it): an idle cache holds no
  // work, so this returns once there is none.
  ~Caches() {
    io.restart();
    io.run_for(std::chrono::seconds(5));
  }
  void cache(const std::string& key) { REQUIRE(direct.set(key, "old", 0, 300) == StoreStatus::ok); }
  bool cached(const std::string& key) {
    StoreItem item;
    return direct.get(key, item) == StoreStatus::ok;
  }
};

}  // namespace

TEST_CASE(
    "postgres: pg_install_sql is idempotent and records every change in the writer's "
    "transaction",
    "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  db.exec(pg_install_sql("users", "id"));  // again: no error, one trigger
  CHECK(db.exec("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT "
                "tgisinternal")[0][0] == "1");
  db.exec("INSERT INTO users VALUES (1, 'a'), (2, 'b')");
  db.exec("UPDATE users SET name = 'c' WHERE id = 1");
  db.exec("UPDATE users SET id = 3 WHERE id = 2");  // the key moves: both ids
  db.exec("DELETE FROM users WHERE id = 1");
  db.exec("BEGIN; INSERT INTO users VALUES (9, 'z'); ROLLBACK");  // leaves nothing
  CHECK(db.outbox() ==
        std::vector<std::string>{"users:1", "users:2", "users:1", "users:2", "users:3", "users:1"});
}

TEST_CASE("postgres: names that are not plain identifiers are refused", "[postgres]") {
  CHECK_THROWS_WITH(pg_install_sql("users; DROP TABLE x", "id"), Catch::Contains("identifier"));
  CHECK_THROWS_WITH(pg_install_sql("users", "id'"), Catch::Contains("identifier"));
  PgOutboxOptions o;
  o.channel = "Wake Up";
  CHECK_THROWS_WITH(pg_install_sql("users", "id", o), Catch::Contains("identifier"));
  o.channel = "app_wake";
  o.outbox = "app.cache_outbox";
  CHECK(pg_install_sql("users", "id", o).find("INSERT INTO app.cache_outbox") != std::string::npos);
}

TEST_CASE("postgres relay: committed changes invalidate memcached; rows go once confirmed",
          "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  Caches c;
  for (const char* k : {"user_1", "user_2", "users_all"}) c.cache(k);
  db.exec("INSERT INTO users VALUES (1, 'a'), (2, 'b')");
  auto source = std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo());
  OutboxRelayOptions o;
  o.interval = std::chrono::milliseconds(200);
  OutboxRelay<PgChange> relay(c.io.get_executor(), source, c.fanout, o);
  relay.start();
  run_until(c.io, [&] { return relay.stats().relayed == 2; });
  CHECK(db.depth() == 0);
  CHECK_FALSE(c.cached("user_1"));
  CHECK_FALSE(c.cached("user_2"));
  CHECK_FALSE(c.cached("users_all"));
  CHECK(relay.stats().unconfirmed == 0);
  relay.close();
  c.io.restart();
  c.io.run_for(std::chrono::milliseconds(50));
}

TEST_CASE("postgres relay: while memcached confirms nothing the rows stay; then they drain",
          "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  Caches c;
  auto source = std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo());
  OutboxRelayOptions o;
  o.interval = std::chrono::milliseconds(100);
  o.max_backoff = std::chrono::milliseconds(400);
  OutboxRelay<PgChange> relay(c.io.get_executor(), source, c.fanout, o);
  c.mc.pause();  // memcached answers nothing: every invalidation times out
  db.exec("INSERT INTO users VALUES (5, 'a')");
  relay.start();
  run_until(c.io, [&] { return relay.stats().unconfirmed >= 2; });
  CHECK(relay.stats().relayed == 0);
  CHECK(db.depth() == 1);  // not confirmed: kept
  c.mc.resume();
  run_until(c.io, [&] { return relay.stats().relayed == 1; });
  CHECK(db.depth() == 0);
  relay.close();
}

TEST_CASE("postgres relay: NOTIFY wakes it at commit, long before its backstop", "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  Caches c;
  auto source = std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo());
  OutboxRelayOptions o;
  o.interval = std::chrono::seconds(600);  // the backstop never comes within the test
  OutboxRelay<PgChange> relay(c.io.get_executor(), source, c.fanout, o);
  relay.start();
  run_until(c.io, [&] { return source->stats().connects == 1 && relay.stats().passes >= 1; });
  c.io.run_for(std::chrono::milliseconds(50));  // the first pass ends: the relay sleeps
  c.cache("user_7");
  auto t0 = Steady::now();
  db.exec("INSERT INTO users VALUES (7, 'a')");
  run_until(
      c.io, [&] { return !c.cached("user_7"); }, std::chrono::seconds(10));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - t0);
  CHECK(source->stats().notifications >= 1);
  CHECK(relay.stats().wakeups >= 1);
  INFO("served within " << took.count() << " ms");
  CHECK(took < std::chrono::seconds(10));
  relay.close();
}

TEST_CASE("postgres relay: two relays share one outbox; each row is relayed once", "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  Caches c;
  db.exec("INSERT INTO users SELECT g, 'u' FROM generate_series(1, 300) g");
  REQUIRE(db.depth() == 300);
  OutboxRelayOptions o;
  o.interval = std::chrono::milliseconds(100);
  o.batch = 20;  // many claims each: they interleave
  auto a_src = std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo());
  auto b_src = std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo());
  OutboxRelay<PgChange> a(c.io.get_executor(), a_src, c.fanout, o),
      b(c.io.get_executor(), b_src, c.fanout, o);
  a.start();
  b.start();
  run_until(c.io, [&] { return a.stats().relayed + b.stats().relayed == 300; });
  c.io.run_for(std::chrono::milliseconds(300));  // a second claim of a row would show now
  CHECK(a.stats().relayed + b.stats().relayed == 300);
  CHECK(a.stats().relayed > 0);
  CHECK(b.stats().relayed > 0);
  CHECK(db.depth() == 0);
}

TEST_CASE("postgres relay: its session terminated, it reconnects, LISTENs again and drains",
          "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  Caches c;
  auto source =
      std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo("application_name=relay_t"));
  OutboxRelayOptions o;
  o.interval = std::chrono::seconds(600);  // only wake-ups: the loss and NOTIFY
  OutboxRelay<PgChange> relay(c.io.get_executor(), source, c.fanout, o);
  relay.start();
  run_until(c.io, [&] { return source->stats().connects == 1 && relay.stats().passes >= 1; });
  db.exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
      "'relay_t'");
  run_until(c.io, [&] { return source->stats().reconnects == 1; });
  c.io.run_for(std::chrono::milliseconds(50));
  c.cache("user_8");
  db.exec("INSERT INTO users VALUES (8, 'a')");  // heard on the new session
  run_until(
      c.io, [&] { return !c.cached("user_8"); }, std::chrono::seconds(10));
  CHECK(db.depth() == 0);
  relay.close();
}

TEST_CASE(
    "postgres: the trigger's notification payload parses, escapes and all; anything else "
    "is refused",
    "[postgres]") {
  detail::PgNotification n;
  REQUIRE(detail::PgPayloadParser(R"({"k": ["5", "7"], "t": "users"})").parse(n));
  CHECK(n.table == "users");
  CHECK(n.keys == std::vector<std::string>{"5", "7"});
  detail::PgNotification e;
  REQUIRE(detail::PgPayloadParser(R"({"t":"a\"b","k":["x\\y\u00e9\ud83d\ude00\n"]})").parse(e));
  CHECK(e.table == "a\"b");
  CHECK(e.keys == std::vector<std::string>{"x\\y\xc3\xa9\xf0\x9f\x98\x80\n"});
  for (const char* bad : {"{}", "", R"({"k": [], "t": 5})", R"({"t": "u"})",
                          R"({"t": "u", "k": ["a"]} x)", R"({"t": "u", "k": ["\ud800"]})",
                          R"({"t": "u", "k": ["a", 1]})", R"({"t": "u", "x": 1, "k": []})"}) {
    detail::PgNotification b;
    INFO(bad);
    CHECK_FALSE(detail::PgPayloadParser(bad).parse(b));
  }
}

TEST_CASE(
    "postgres relay: a notification drops the near copies in every listening instance at "
    "once, though one relay claims the row",
    "[postgres]") {
  Db db;
  db.exec(pg_install_sql("users", "id"));
  Caches c;
  Options near;
  near.key_prefix = "user_";
  near.near_ttl = std::chrono::seconds(60);
  near.near_sync = std::chrono::seconds(60);  // the near log is read too late to matter here
  auto loader = [](const std::string& k, LoadHandler<std::string> h) { h(nullptr, "row " + k); };
  using Cache = AsyncCacheAside<std::string, std::string, StringSerializer>;
  struct Instance {
    Cache cache;
    AsyncInvalidationFanout<PgChange> fanout;
    std::shared_ptr<PgOutbox> outbox;
    OutboxRelay<PgChange> relay;
    Instance(Caches& c, const Options& o, Cache::Loader l, const std::string& conninfo)
        : cache(c.store, std::move(l), o),
          fanout(cache, [](const PgChange& ch) { return ch.key; }),
          outbox(std::make_shared<PgOutbox>(c.io.get_executor(), conninfo, options())),
          relay(c.io.get_executor(), outbox, fanout, relay_options()) {}
    PgOutboxOptions options() {
      PgOutboxOptions o;
      o.on_notified = [this](const std::vector<PgChange>& ch) { fanout.drop_near(ch); };
      return o;
    }
    static OutboxRelayOptions relay_options() {
      OutboxRelayOptions o;
      o.interval = std::chrono::seconds(600);  // only the notification
      return o;
    }
    bool near_has(const std::string& k) {
      std::optional<std::string> v;
      return cache.try_get_near(k, v);
    }
  };
  Instance a(c, near, loader, db.conninfo()), b(c, near, loader, db.conninfo());
  for (Instance* i : {&a, &b})
    for (int n = 0; n < 2; ++n) {  // loaded, then read back from memcached: kept near
      bool got = false;
      i->cache.async_get("9", [&](std::exception_ptr, std::optional<std::string>) { got = true; });
      run_until(c.io, [&] { return got; });
    }
  REQUIRE(a.near_has("9"));
  REQUIRE(b.near_has("9"));
  a.relay.start();
  b.relay.start();
  run_until(c.io,
            [&] { return a.outbox->stats().connects == 1 && b.outbox->stats().connects == 1; });
  c.io.run_for(std::chrono::milliseconds(50));  // both first passes end: both listen
  db.exec("INSERT INTO users VALUES (9, 'a')");
  run_until(
      c.io, [&] { return !a.near_has("9") && !b.near_has("9"); }, std::chrono::seconds(10));
  run_until(c.io, [&] { return a.relay.stats().relayed + b.relay.stats().relayed == 1; });
  CHECK(a.outbox->stats().notifications >= 1);
  CHECK(b.outbox->stats().notifications >= 1);
  CHECK(db.depth() == 0);
}

namespace {

// An instance's relay in a process of its own (tests/postgres/relay_worker.cpp), cut
// off from memcached from the start (a proxy that drops its bytes), so it holds what it
// claims until its poll timeout.
struct WorkerRelay {
  FaultProxy proxy;
  Child child;
  WorkerRelay(Caches& c, const Db& db, const std::string& poll_timeout_ms,
              const std::string& idle_ms)
      : proxy(c.mc.port()),
        child({CACHEASIDE_RELAY_WORKER, cut_off(proxy, poll_timeout_ms), db.conninfo(), idle_ms}) {}
  static std::string cut_off(FaultProxy& p, const std::string& poll_timeout_ms) {
    p.drop();
    return p.config("--POLL-TIMEOUT=" + poll_timeout_ms + " --RETRY-TIMEOUT=60");
  }
  // Waits for the line that starts with `prefix`; returns it.
  std::string wait_for(const std::string& prefix) {
    for (std::string l = child.line(); !l.empty(); l = child.line())
      if (l.rfind(prefix, 0) == 0) return l;
    FAIL("the relay worker ended before '" << prefix << "'");
    return "";
  }
};

// Users 1 to 3 written, their keys (and users_all) cached, and a worker relay cut off
// from memcached.
struct Crash {
  Db db;
  Caches c;
  std::optional<WorkerRelay> w;
  Crash(const std::string& poll_timeout_ms, const std::string& idle_ms) {
    db.exec(pg_install_sql("users", "id"));
    for (const auto& k : keys) c.cache(k);
    db.exec("INSERT INTO users VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    w.emplace(c, db, poll_timeout_ms, idle_ms);
  }
  // The rows the worker held, relayed by this process's own relay: the keys gone
  // from memcached, the outbox empty.
  void drained_here() {
    auto source = std::make_shared<PgOutbox>(c.io.get_executor(), db.conninfo());
    OutboxRelayOptions o;
    o.interval = std::chrono::milliseconds(100);
    OutboxRelay<PgChange> relay(c.io.get_executor(), source, c.fanout, o);
    relay.start();
    run_until(c.io, [&] {
      for (const auto& k : keys)
        if (c.cached(k)) return false;
      return db.depth() == 0;
    });
    relay.close();
  }
  const std::vector<std::string> keys = {"user_1", "user_2", "user_3", "users_all"};
};

}  // namespace

TEST_CASE("postgres relay crash: a relay killed while it holds a claim; another relays its rows",
          "[postgres]") {
  Crash t("60000", "60000");  // its invalidations never arrive: it holds the claim, waiting
  CHECK(t.w->wait_for("claimed ") == "claimed 3");
  t.w->child.kill();  // SIGKILL: its session ends, its transaction with it
  t.drained_here();
}

TEST_CASE(
    "postgres relay crash: a relay frozen while it holds a claim; its session times out "
    "and another relays its rows",
    "[postgres]") {
  Crash t("60000", "1000");  // idle in transaction: 1 s
  CHECK(t.w->wait_for("claimed ") == "claimed 3");
  t.w->child.signal(SIGSTOP);
  auto t0 = Steady::now();
  t.drained_here();
  CHECK(Steady::now() - t0 >= std::chrono::milliseconds(900));  // not before the timeout
}

TEST_CASE(
    "postgres relay crash: rows memcached did not confirm stay in the outbox, so a relay "
    "that dies after its pass loses nothing",
    "[postgres]") {
  Crash t("200", "60000");  // its invalidations time out: none confirmed
  CHECK(t.w->wait_for("confirmed ") == "confirmed 0 of 3");
  CHECK(t.w->wait_for("finished ") == "finished 0");  // its transaction ended: nothing removed
  t.w->child.kill();                                  // with it go the caches' own pending retries
  CHECK(t.db.depth() == 3);
  t.drained_here();
}
