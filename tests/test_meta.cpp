// MetaStore and the meta protocol's lookups: round trips, leases, the
// stale-while-revalidate option, sharing a cluster with MemcachedStore, and
// replies real memcached never sends.
#include <cacheaside/meta.hpp>
#include <catch2/catch.hpp>
#include <thread>

#include "support/common.hpp"
#include "support/fake_server.hpp"
#include "support/gate.hpp"
#include "support/raw_client.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// Counts round trips: one execute() is one write and one read per server.
class CountingMetaStore : public MetaStore {
 public:
  using MetaStore::MetaStore;
  void execute(detail::MetaOp* ops, std::size_t n) override {
    ++round_trips;
    commands += static_cast<int>(n);
    MetaStore::execute(ops, n);
  }
  void reset() { round_trips = commands = 0; }
  std::atomic<int> round_trips{0};
  std::atomic<int> commands{0};
};

std::vector<std::string> keys_from(int from, int to) {
  std::vector<std::string> ks;
  for (int i = from; i < to; ++i) ks.push_back("k" + std::to_string(i));
  return ks;
}

}  // namespace

TEST_CASE("meta replies parse strictly", "[meta]") {
  detail::MetaReply r;
  REQUIRE(detail::parse_meta_reply("VA 5 f7 c3 O12 W", r));
  CHECK((r.code == detail::MetaCode::va && r.size == 5 && r.flags == 7 && r.cas == 3));
  CHECK((r.has_opaque && r.opaque == 12 && r.won && !r.claimed && !r.stale));
  REQUIRE(detail::parse_meta_reply("VA 0 f0 c2 t30 Z X", r));
  CHECK((r.claimed && r.stale && !r.won));
  REQUIRE(detail::parse_meta_reply("EN O8", r));
  CHECK((r.code == detail::MetaCode::en && r.opaque == 8));
  REQUIRE(detail::parse_meta_reply("SERVER_ERROR object too large for cache", r));
  CHECK((r.code == detail::MetaCode::server_error && r.message == "object too large for cache"));
  REQUIRE(detail::parse_meta_reply("MN", r));
  for (const char* bad : {"", "VA", "VA -1", "VA 99999999999999999999999", "XX", "VA 5 fz",
                          "VA 5 f4294967296", "HD\x01", "VA 5 Wx", "MN junk", "va 5",
                          "VA 2000000000", "HD O", "VA 1 c18446744073709551616"})
    CHECK_FALSE(detail::parse_meta_reply(bad, r));
}

TEST_CASE("MetaStore configuration: what it supports, and clear errors for the rest", "[meta]") {
  CHECK_NOTHROW(MetaStore("127.0.0.1:11211"));
  CHECK_NOTHROW(
      MetaStore("--SERVER=127.0.0.1:11211 --POOL-MAX=4 --CONNECT-TIMEOUT=50 "
                "--POLL-TIMEOUT=50 --RETRY-TIMEOUT=2 --TCP-NODELAY"));
  CHECK_NOTHROW(MetaStore("--SERVER=localhost:1 --SERVER=127.0.0.2:2 --DISTRIBUTION=consistent"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=127.0.0.1:11211 --BINARY-PROTOCOL"),
                    Catch::Contains("does not support --BINARY-PROTOCOL"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=a:1 --DISTRIBUTION=modula"), Catch::Contains("ketama"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=a:1/?5"), Catch::Contains("no weights"));
  CHECK_THROWS_WITH(MetaStore("--POLL-TIMEOUT=abc --SERVER=a:1"), Catch::Contains("not a number"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=a:70000"), Catch::Contains("out of range"));
  CHECK_THROWS_AS(MetaStore(""), Error);
  CHECK_THROWS_AS(MetaStore("--POOL-MAX=2"), Error);  // no server
  ServerOptions so;
  so.servers = {"127.0.0.1:1"};
  so.poll_timeout = std::chrono::milliseconds(20);
  CHECK_NOTHROW(MetaStore(so));
}

TEST_CASE("meta round trips: a hit 1, a cold miss 2, a batch of any mix 2", "[meta]") {
  MemcachedProcess mc;
  auto store = std::make_shared<CountingMetaStore>(mc.config());
  Database db;
  for (int i = 0; i < 100; ++i) db.db["k" + std::to_string(i)] = "v" + std::to_string(i);
  std::atomic<int> bulk_calls{0};
  StringCache::BulkLoader bulk = [&](const std::vector<std::string>& ks) {
    ++bulk_calls;
    std::vector<std::optional<std::string>> out;
    for (const auto& k : ks)
      out.push_back(db.db.count(k) ? std::optional<std::string>(db.db[k]) : std::nullopt);
    return out;
  };
  StringCache c(store, db.loader(), bulk);

  store->reset();
  CHECK(c.get("k0") == "v0");
  CHECK(store->round_trips == 2);  // mg N, ms C
  store->reset();
  CHECK(c.get("k0") == "v0");
  CHECK(store->round_trips == 1);

  // 50 cached, 50 cold, through the bulk loader.
  c.get_many(keys_from(0, 50));
  store->reset();
  auto vs = c.get_many(keys_from(0, 100));
  CHECK(store->round_trips == 2);
  CHECK(store->commands == 150);  // 100 mg, 50 ms
  for (int i = 0; i < 100; ++i) CHECK(vs[i] == "v" + std::to_string(i));
  store->reset();
  c.get_many(keys_from(0, 100));
  CHECK(store->round_trips == 1);

  // Without a bulk loader: loaded key by key, still stored in one pipeline.
  StringCache single(store, db.loader(), Options{});
  single.invalidate_many(keys_from(0, 20));
  store->reset();
  vs = single.get_many(keys_from(0, 40));
  CHECK(store->round_trips == 2);
  for (int i = 0; i < 40; ++i) CHECK(vs[i] == "v" + std::to_string(i));
  CHECK(c.stats().cache_errors == 0);
  CHECK(single.stats().cache_errors == 0);
}

TEST_CASE("meta: a lease loser waits for the winner's value and never loads", "[meta]") {
  MemcachedProcess mc;
  auto store = std::make_shared<MetaStore>(mc.config());
  Gate gate;
  StringCache a(store, [&](const std::string&) -> std::optional<std::string> {
    gate.arrive();
    return "from a";
  });
  std::atomic<int> b_loads{0};
  StringCache b(store, [&](const std::string&) -> std::optional<std::string> {
    ++b_loads;
    return "from b";
  });
  std::optional<std::string> got_a, got_b;
  std::thread ta([&] { got_a = a.get("k"); });
  REQUIRE(gate.wait_arrival());
  std::thread tb([&] { got_b = b.get("k"); });
  bool waiting = eventually([&] { return b.stats().lease_waits == 1; });  // found a's lease
  gate.open();
  ta.join();
  tb.join();
  REQUIRE(waiting);
  CHECK(got_a == "from a");
  CHECK(got_b == "from a");
  CHECK(b_loads == 0);
  CHECK(b.stats().lease_waits == 1);
}

TEST_CASE("meta: an invalidation during a load makes its store fail", "[meta]") {
  MemcachedProcess mc;
  auto store = std::make_shared<MetaStore>(mc.config());
  std::string row = "old";
  Gate gate;
  StringCache slow(store, [&](const std::string&) -> std::optional<std::string> {
    std::string v = row;  // read before the write below
    gate.arrive();
    return v;
  });
  StringCache writer(store, [&](const std::string&) -> std::optional<std::string> { return row; });
  std::optional<std::string> got;
  std::thread t([&] { got = slow.get("k"); });
  REQUIRE(gate.wait_arrival());
  row = "new";
  CHECK(writer.invalidate("k"));
  gate.open();
  t.join();
  CHECK(got == "old");  // its caller began before the write
  CHECK(slow.stats().stale_sets_prevented == 1);
  CHECK(writer.get("k") == "new");
}

TEST_CASE("meta: stale_on_invalidate off, nobody gets the old value after invalidate", "[meta]") {
  MemcachedProcess mc;
  auto store = std::make_shared<MetaStore>(mc.config());
  std::string row = "v1";
  Gate gate;
  std::atomic<bool> hold{false};
  StringCache a(store, [&](const std::string&) -> std::optional<std::string> {
    if (hold) gate.arrive();
    return row;
  });
  std::atomic<int> b_loads{0};
  StringCache b(store, [&](const std::string&) -> std::optional<std::string> {
    ++b_loads;
    return row;
  });
  CHECK(a.get("k") == "v1");
  row = "v2";
  CHECK(a.invalidate("k"));
  hold = true;
  std::optional<std::string> got_a, got_b;
  std::thread ta([&] { got_a = a.get("k"); });
  REQUIRE(gate.wait_arrival());
  std::thread tb([&] { got_b = b.get("k"); });  // waits for a's load
  bool waiting = eventually([&] { return b.stats().lease_waits == 1; });
  gate.open();
  ta.join();
  tb.join();
  REQUIRE(waiting);
  CHECK(got_a == "v2");
  CHECK(got_b == "v2");
  CHECK(b_loads == 0);
  CHECK(b.stats().stale_served == 0);
}

TEST_CASE(
    "meta: stale_on_invalidate on, one caller reloads while the others get the previous value",
    "[meta]") {
  MemcachedProcess mc;
  auto store = std::make_shared<MetaStore>(mc.config());
  Options o;
  o.stale_on_invalidate = std::chrono::seconds(2);
  std::string row = "v1";
  Gate gate;
  std::atomic<bool> hold{false};
  StringCache a(
      store,
      [&](const std::string&) -> std::optional<std::string> {
        if (hold) gate.arrive();
        return row;
      },
      o);
  std::atomic<int> b_loads{0};
  StringCache b(
      store,
      [&](const std::string&) -> std::optional<std::string> {
        ++b_loads;
        return row;
      },
      o);
  CHECK(a.get("k") == "v1");
  row = "v2";
  CHECK(a.invalidate("k"));  // md k I T2
  hold = true;
  std::optional<std::string> got_a;
  std::thread ta([&] { got_a = a.get("k"); });  // X W: reloads
  REQUIRE(gate.wait_arrival());
  CHECK(b.get("k") == "v1");  // X Z: the previous value, at once
  CHECK(b.stats().stale_served == 1);
  gate.open();
  ta.join();
  CHECK(got_a == "v2");
  CHECK(b.get("k") == "v2");
  CHECK(b_loads == 0);

  // Nobody reloads: after the window the item is gone, never served older.
  hold = false;
  row = "v3";
  CHECK(a.invalidate("k"));
  // Real memcached's clock: the 2 s window ends on a whole second.
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  CHECK(b.get("k") == "v3");
  CHECK(b_loads == 1);
}

TEST_CASE("stale_on_invalidate needs the meta protocol", "[meta]") {
  MemcachedProcess mc;
  Options o;
  o.stale_on_invalidate = std::chrono::seconds(1);
  auto loader = [](const std::string& k) -> std::optional<std::string> { return k; };
  CHECK_THROWS_WITH(StringCache(std::make_shared<MemcachedStore>(mc.config()), loader, o),
                    Catch::Contains("MetaStore"));
  o.leases = false;
  CHECK_THROWS_WITH(StringCache(std::make_shared<MetaStore>(mc.config()), loader, o),
                    Catch::Contains("leases"));
}

TEST_CASE("MetaStore and MemcachedStore put a key on the same server", "[meta]") {
  MemcachedProcess a, b, c;
  std::string cfg = a.config() + " " + b.config() + " " + c.config();
  MemcachedStore classic(cfg);
  MetaStore meta(cfg);
  for (int i = 0; i < 300; ++i) {
    std::string k = "key:" + std::to_string(i);
    REQUIRE(classic.set(k, "c" + std::to_string(i), 0, 0) == StoreStatus::ok);
    REQUIRE(meta.set("m" + k, "m" + std::to_string(i), 0, 0) == StoreStatus::ok);
  }
  int same = 0;
  for (int i = 0; i < 300; ++i) {
    std::string k = "key:" + std::to_string(i);
    StoreItem it;
    if (meta.get(k, it) == StoreStatus::ok && it.value == "c" + std::to_string(i)) ++same;
    if (classic.get("m" + k, it) == StoreStatus::ok && it.value == "m" + std::to_string(i)) ++same;
  }
  CHECK(same == 600);
  for (MemcachedProcess* p : {&a, &b, &c}) {
    RawClient raw(p->port());
    CHECK(std::stoi(raw.stats()["curr_items"]) > 100);  // spread over all three
  }
}

TEST_CASE("meta and classic caches share keys: leases interoperate", "[meta]") {
  MemcachedProcess mc;
  auto meta = std::make_shared<MetaStore>(mc.config());
  auto classic = std::make_shared<MemcachedStore>(mc.config());
  Gate gate;
  StringCache m(meta, [&](const std::string& k) -> std::optional<std::string> {
    gate.arrive();
    return "v" + k;
  });
  std::atomic<int> c_loads{0};
  StringCache c(classic, [&](const std::string& k) -> std::optional<std::string> {
    ++c_loads;
    return "v" + k;
  });
  std::optional<std::string> got_m;
  std::thread t([&] { got_m = m.get("k"); });  // holds memcached's placeholder
  REQUIRE(gate.wait_arrival());
  CHECK(c.get("k") == "vk");  // refreshes over the placeholder, guarded by its CAS id
  gate.open();
  t.join();
  CHECK(got_m == "vk");
  CHECK(c.stats().decode_errors == 0);
  CHECK(m.stats().decode_errors == 0);
  CHECK(m.get("k") == "vk");
  CHECK(c.get("k") == "vk");
  CHECK(m.stats().hits == 1);
  CHECK(c.stats().hits == 1);
}

TEST_CASE("meta: a reply that does not parse, or answers another request, closes its connection",
          "[meta]") {
  FakeServer fake([](const std::string& req) -> std::string {
    std::string o = opaque_of(req);
    if (req.rfind("mg bad ", 0) == 0) return "VA zz\r\n";
    if (req.rfind("mg other ", 0) == 0) return "VA 5 f0 c1 O999\r\nwrong\r\n";
    if (req.rfind("mg error ", 0) == 0) return "CLIENT_ERROR bad command line format\r\n";
    if (req.rfind("mg good ", 0) == 0) return "VA 2 f0 c1 " + o + "\r\nok\r\n";
    return "EN " + o + "\r\n";
  });
  MetaStore store(fake.config() + " --SERVER-FAILURE-LIMIT=100");  // not skipped after these
  StoreItem it;
  CHECK(store.get("good", it) == StoreStatus::ok);
  CHECK(it.value == "ok");
  CHECK(fake.connections() == 1);
  CHECK(store.get("bad", it) == StoreStatus::error);
  CHECK(store.get("good", it) == StoreStatus::ok);
  CHECK(fake.connections() == 2);
  it.value.clear();
  CHECK(store.get("other", it) == StoreStatus::error);
  CHECK(it.value.empty());
  CHECK(store.get("error", it) == StoreStatus::error);
  // In a batch: what came before is used, nothing after is misattributed.
  std::vector<StoreItem> items;
  std::vector<char> found;
  CHECK(store.get_multi({"good", "other", "good2", "miss"}, items, found) == StoreStatus::ok);
  CHECK(found == std::vector<char>{1, 0, 0, 0});
  CHECK(items[0].value == "ok");
  CHECK(items[2].value.empty());
  CHECK(store.get("good", it) == StoreStatus::ok);
  CHECK(fake.connections() == 5);
}

TEST_CASE("meta: replies that trickle in a byte at a time are read whole", "[meta]") {
  std::string value(150, 'x');
  FakeServer fake(
      [&](const std::string& req) -> std::string {
        return "VA " + std::to_string(value.size()) + " f9 c7 " + opaque_of(req) + "\r\n" + value +
               "\r\n";
      },
      true);
  MetaStore store(fake.config() + " --POLL-TIMEOUT=3000");
  StoreItem it;
  REQUIRE(store.get("k", it) == StoreStatus::ok);
  CHECK(it.value == value);
  CHECK(it.flags == 9);
  CHECK(it.cas == 7);
}

TEST_CASE("meta: large values cross partial writes and reads; oversize is refused cleanly",
          "[meta]") {
  MemcachedProcess mc;
  MetaStore store(mc.config());
  std::string big(900 * 1024, 'b');
  for (std::size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + i % 26);
  REQUIRE(store.set("big", big, 3, 0) == StoreStatus::ok);
  StoreItem it;
  REQUIRE(store.get("big", it) == StoreStatus::ok);
  CHECK(it.value == big);
  CHECK(store.set("huge", std::string(2 * 1024 * 1024, 'h'), 0, 0) == StoreStatus::too_large);
  CHECK(store.get("big", it) == StoreStatus::ok);  // the connection is still in step
  std::uint64_t n = 0;
  CHECK(store.incr("n", 5, 10, 0, n) == StoreStatus::ok);
  CHECK(n == 10);
  CHECK(store.incr("n", 5, 10, 0, n) == StoreStatus::ok);
  CHECK(n == 15);
  CHECK(store.incr("big", 1, 0, 0, n) == StoreStatus::error);  // not a number
  CHECK(store.add("n", "x", 0, 0) == StoreStatus::not_stored);
  CHECK(store.cas("n", "x", 0, 0, 12345) == StoreStatus::exists);
  CHECK(store.remove("n") == StoreStatus::ok);
  CHECK(store.remove("n") == StoreStatus::not_found);
}

TEST_CASE("meta: one pooled connection serves 8 threads in turn", "[meta]") {
  MemcachedProcess mc;
  auto store = std::make_shared<MetaStore>(mc.config() + " --POOL-MAX=1");
  Database db;
  for (int i = 0; i < 20; ++i) db.db["k" + std::to_string(i)] = "v" + std::to_string(i);
  StringCache c(store, db.loader());
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string k = "k" + std::to_string((i + t) % 20);
        if (c.get(k) != db.db[k]) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);
  CHECK(c.stats().cache_errors == 0);
}
