#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <thread>

#include "support/common.hpp"
#include "support/fault_store.hpp"
#include "support/raw_client.hpp"
#include "support/user.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// Runs a check against a real memcached and against InMemoryStore.
template <class Fn>
void on_both_stores(Fn fn) {
  SECTION("memcached") {
    Server srv;
    fn(std::static_pointer_cast<Store>(srv.store));
  }
  SECTION("in-memory") { fn(std::make_shared<InMemoryStore>()); }
}
}  // namespace

TEST_CASE("miss loads and stores, then hits", "[cache]") {
  on_both_stores([](std::shared_ptr<Store> store) {
    std::atomic<int> loads{0};
    Options o;
    o.key_prefix = "user_";
    o.ttl = std::chrono::seconds(120);
    TestCache<int, User, JsonSerializer<User>> users(
        store,
        [&](const int& id) -> std::optional<User> {
          ++loads;
          return make_user(id);
        },
        o);
    CHECK(users.get(42) == make_user(42));
    CHECK(users.get(42) == make_user(42));
    CHECK(loads == 1);
    auto s = users.stats();
    CHECK(s.hits == 1);
    CHECK(s.misses == 1);
    CHECK(s.loads == 1);
    CHECK(users.peek(42) == make_user(42));
    CHECK(users.peek(43) == std::nullopt);
    CHECK(loads == 1);  // peek never loads
  });
}

TEST_CASE("ttl expiry reloads", "[cache][nostore]") {
  ManualWorld w;
  std::atomic<int> loads{0};
  Options o = w.options();
  o.ttl = std::chrono::seconds(1);
  o.early_refresh_beta = 0;
  StringCache c(
      w.store,
      [&](const std::string& k) -> std::optional<std::string> {
        ++loads;
        return k + std::to_string(loads.load());
      },
      o);
  CHECK(c.get("k") == "k1");
  w.clock->advance(999ms);
  CHECK(c.get("k") == "k1");
  w.clock->advance(2ms);
  CHECK(c.get("k") == "k2");
  CHECK(loads == 2);
}

TEST_CASE("memcached drops an item at its whole-second TTL", "[cache][slow]") {
  // Only the server can show this: real time, real memcached.
  Server srv;
  Options o;
  o.ttl = std::chrono::seconds(1);
  o.ttl_jitter = 0;
  o.early_refresh_beta = 0;
  StringCache c(
      srv.store, [](const std::string& k) { return std::optional<std::string>(k); }, o);
  c.get("k");
  RawClient raw(srv.process.port());
  CHECK(raw.get("k"));
  std::this_thread::sleep_for(2100ms);  // TTL 1 s + 1 s slack for memcached's clock
  CHECK_FALSE(raw.get("k"));
}

TEST_CASE("absence is cached for negative_ttl", "[cache]") {
  on_both_stores([](std::shared_ptr<Store> store) {
    std::atomic<int> loads{0};
    auto loader = [&](const int&) -> std::optional<std::string> {
      ++loads;
      return std::nullopt;
    };
    Options o;
    o.key_prefix = "u_";
    TestCache<int, std::string, StringSerializer> c(store, loader, o);
    CHECK_FALSE(c.get(7).has_value());
    CHECK_FALSE(c.get(7).has_value());
    CHECK(loads == 1);
    CHECK(c.stats().negative_hits == 1);
    c.invalidate(7);
    CHECK_FALSE(c.get(7).has_value());
    CHECK(loads == 2);

    Options off;
    off.key_prefix = "v_";
    off.negative_ttl = std::chrono::milliseconds(0);
    TestCache<int, std::string, StringSerializer> d(store, loader, off);
    d.get(7);
    d.get(7);
    CHECK(loads == 4);
  });
}

TEST_CASE("negative_ttl defaults to a tenth of ttl, at least 1 s", "[cache][slow]") {
  Server srv;
  Options o;
  o.ttl = std::chrono::seconds(60);
  o.ttl_jitter = 0;
  StringCache c(
      srv.store, [](const std::string&) { return std::optional<std::string>(); }, o);
  c.get("absent");
  RawClient raw(srv.process.port());
  raw.send("mg absent t\r\n");
  std::string line = raw.line();  // 6 s, plus 1 s for memcached clock granularity
  CHECK((line == "HD t7" || line == "HD t6"));
}

TEST_CASE("invalidate and put", "[cache]") {
  on_both_stores([](std::shared_ptr<Store> store) {
    std::string source = "v1";
    std::atomic<int> loads{0};
    StringCache c(store, [&](const std::string&) -> std::optional<std::string> {
      ++loads;
      return source;
    });
    CHECK(c.get("k") == "v1");
    source = "v2";
    CHECK(c.get("k") == "v1");
    CHECK(c.invalidate("k"));
    CHECK(c.get("k") == "v2");
    CHECK(c.put("k", "v3"));
    CHECK(c.get("k") == "v3");
    CHECK(c.peek("k") == "v3");
    CHECK(loads == 2);
    CHECK(c.invalidate_many({"k", "never-there"}));
    CHECK(c.peek("k") == std::nullopt);
  });
}

TEST_CASE("get_many: order, duplicates, partial hits, bulk loader gets exactly the misses",
          "[cache]") {
  on_both_stores([](std::shared_ptr<Store> store) {
    auto faults = std::make_shared<FaultStore>(store);
    std::atomic<int> single{0};
    std::vector<std::vector<int>> bulk_calls;
    Options o;
    o.key_prefix = "user_";
    TestCache<int, User, JsonSerializer<User>> users(
        faults,
        [&](const int& id) -> std::optional<User> {
          ++single;
          if (id > 1000) return std::nullopt;
          return make_user(id);
        },
        o);
    users.get(2);
    users.get(4);
    users.set_bulk_loader([&](const std::vector<int>& ids) {
      bulk_calls.push_back(ids);
      std::vector<std::optional<User>> out;
      for (int id : ids)
        out.push_back(id > 1000 ? std::nullopt : std::optional<User>(make_user(id)));
      return out;
    });
    faults->reset_counts();
    auto v = users.get_many({5, 2, 2, 1001, 3, 4, 5});
    REQUIRE(v.size() == 7);
    CHECK(v[0] == make_user(5));
    CHECK(v[1] == make_user(2));
    CHECK(v[2] == make_user(2));
    CHECK(v[3] == std::nullopt);
    CHECK(v[4] == make_user(3));
    CHECK(v[5] == make_user(4));
    CHECK(v[6] == make_user(5));
    REQUIRE(bulk_calls.size() == 1);
    CHECK(bulk_calls[0] == std::vector<int>{5, 1001, 3});
    CHECK(single == 2);
    CHECK(faults->multi_gets == 1);
    CHECK(faults->gets == 3);  // one `gets` per acquired lease marker, none for hits

    // all hits now: one round trip in total
    faults->reset_counts();
    auto w = users.get_many({1001, 3, 5, 2});
    CHECK(w[0] == std::nullopt);
    CHECK(w[1] == make_user(3));
    CHECK(faults->round_trips() == 1);
    CHECK(bulk_calls.size() == 1);
  });
}

TEST_CASE("get_many without a bulk loader uses the single loader", "[cache][nostore]") {
  auto store = std::make_shared<InMemoryStore>();
  std::atomic<int> loads{0};
  StringCache c(store, [&](const std::string& k) -> std::optional<std::string> {
    ++loads;
    return "v" + k;
  });
  auto v = c.get_many({"a", "b", "a"});
  CHECK(v == std::vector<std::optional<std::string>>{"va", "vb", "va"});
  CHECK(loads == 2);
  CHECK(c.get_many({}).empty());
}

TEST_CASE("8 threads share one instance", "[cache][threads]") {
  Server srv;
  std::atomic<int> loads{0};
  Options o;
  o.key_prefix = "user_";
  TestCache<int, User, JsonSerializer<User>> users(
      srv.store,
      [&](const int& id) -> std::optional<User> {
        ++loads;
        if (id % 10 == 0) return std::nullopt;
        return make_user(id);
      },
      o);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        int id = (i * 7 + t) % 50;
        if (i % 25 == 0) users.invalidate(id);
        if (i % 9 == 0) {
          auto v = users.get_many({id, id + 1, id});
          if (v[0] != v[2]) ++wrong;
          if ((id % 10 == 0) != !v[0]) ++wrong;
          continue;
        }
        auto u = users.get(id);
        if (id % 10 == 0 ? u.has_value() : !(u == make_user(id))) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong == 0);
  CHECK(users.stats().cache_errors == 0);
  CHECK(users.stats().hits > 1000);
}

TEST_CASE("raw format writes only the serializer's bytes with flags 0", "[cache]") {
  Server srv;
  Options o;
  o.format = Format::raw;
  o.key_prefix = "user_";
  TestCache<int, User, JsonSerializer<User>> users(
      srv.store, [](const int& id) -> std::optional<User> { return make_user(id); }, o);
  users.get(3);
  RawClient raw(srv.process.port());
  auto item = raw.get("user_3");
  REQUIRE(item);
  CHECK(item->flags == 0);
  CHECK(nlohmann::json::parse(item->value) == nlohmann::json(make_user(3)));
  REQUIRE(raw.set("user_9", R"({"id":9,"name":"nine","email":"n@x"})"));
  CHECK(users.get(9) == User{9, "nine", "n@x"});
  CHECK(users.stats().hits == 1);
}

TEST_CASE("raw format: an empty value is cached like any other", "[cache]") {
  // Over the meta protocol an empty flags-0 item is also memcached's placeholder for
  // a load in progress; a raw cache has no leases, so for it the item is a value.
  Server srv;
  Options o;
  o.format = Format::raw;
  std::atomic<int> loads{0};
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        ++loads;
        return std::string();
      },
      o);
  for (int i = 0; i < 3; ++i) CHECK(c.get("empty") == std::string());
  CHECK(c.get_many({"empty", "empty"}) ==
        std::vector<std::optional<std::string>>{std::string(), std::string()});
  CHECK(c.peek("empty") == std::string());
  CHECK(loads == 1);
  CHECK(c.stats().hits == 3);
}

TEST_CASE("CborSerializer and envelope flags", "[cache]") {
  Server srv;
  TestCache<int, User, CborSerializer<User>> users(
      srv.store, [](const int& id) -> std::optional<User> { return make_user(id); });
  CHECK(users.get(1) == make_user(1));
  CHECK(users.get(1) == make_user(1));
  CHECK(users.stats().hits == 1);
  RawClient raw(srv.process.port());
  auto item = raw.get("1");
  REQUIRE(item);
  CHECK(item->flags == envelope::value_flags(codec_id::cbor));
}

TEST_CASE("configuration mistakes throw cacheaside::Error", "[cache][nostore]") {
  auto store = std::make_shared<InMemoryStore>();
  auto loader = [](const std::string&) { return std::optional<std::string>(); };
  CHECK_THROWS_AS(StringCache(nullptr, loader), Error);
  CHECK_THROWS_AS(StringCache(store, nullptr), Error);
  Options bad;
  bad.ttl = std::chrono::milliseconds(0);
  CHECK_THROWS_AS(StringCache(store, loader, bad), Error);
  CHECK_THROWS_AS(MemcachedStore("--SERVER=127.0.0.1:1 --NO-SUCH-OPTION"), Error);
  CHECK_THROWS_AS(MemcachedStore(""), Error);
  Options nogroup;
  StringCache c(store, loader, nogroup);
  CHECK_THROWS_AS(c.invalidate_all(), Error);
}

TEST_CASE("MemcachedStore from typed options", "[cache]") {
  Server srv;
  ServerOptions so;
  so.servers = {"127.0.0.1:" + std::to_string(srv.process.port())};
  so.pool_max = 4;
  so.poll_timeout = std::chrono::milliseconds(250);
  CHECK(so.to_config() == "--SERVER=127.0.0.1:" + std::to_string(srv.process.port()) +
                              " --POOL-MAX=4 --POLL-TIMEOUT=250");
  auto store = std::make_shared<MemcachedStore>(so);
  CHECK(store->config().find("--POOL-MAX=4") != std::string::npos);
  CHECK(store->config().find("--POOL-MAX=16") == std::string::npos);  // ours gives way
  StringCache c(store, [](const std::string& k) { return std::optional<std::string>(k); });
  CHECK(c.get("typed") == "typed");
  CHECK(c.peek("typed") == "typed");
  CHECK_THROWS_AS(MemcachedStore(ServerOptions{}), Error);  // no server
}
