// InvalidationFanout over a real memcached: one change deletes its keys in
// several caches, each distinct key once, and says which changes memcached
// confirmed.
#include <cacheaside/invalidation_fanout.hpp>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "support/common.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

using ByIdCache = TestCache<long long, std::string, StringSerializer>;

// A user row per id in "user_<id>" and the list in "users_all", as the example
// service keeps them.
struct TwoCaches {
  Server server;
  std::map<long long, std::string> rows;
  int list_loads = 0;
  ByIdCache by_id{server.store,
                  [this](const long long& id) -> std::optional<std::string> {
                    auto it = rows.find(id);
                    if (it == rows.end()) return std::nullopt;
                    return it->second;
                  },
                  options("user_")};
  StringCache lists{server.store,
                    [this](const std::string&) -> std::optional<std::string> {
                      ++list_loads;
                      std::string all;
                      for (auto& [id, row] : rows) all += row + ";";
                      return all;
                    },
                    options("")};
  InvalidationFanout<long long> on_user{by_id, [](long long id) { return id; }};

  TwoCaches() {
    on_user.add(lists, [](long long) { return std::string("users_all"); });
  }
  static Options options(const char* prefix) {
    Options o;
    o.key_prefix = prefix;
    o.ttl = std::chrono::seconds(120);
    o.early_refresh_beta = 0;
    return o;
  }
  bool cached(const std::string& key) {
    StoreItem item;
    return server.store->get(key, item) == StoreStatus::ok;
  }
};

}  // namespace

TEST_CASE("fanout: a change deletes its keys in every cache, each distinct key once", "[fanout]") {
  TwoCaches w;
  for (long long id : {5, 7, 9}) w.rows[id] = "user" + std::to_string(id);
  for (long long id : {5, 7, 9}) REQUIRE(w.by_id.get(id));
  REQUIRE(w.lists.get("users_all") == "user5;user7;user9;");
  REQUIRE(w.cached("user_5"));
  REQUIRE(w.cached("users_all"));

  w.rows[5] = "renamed5";
  w.rows.erase(7);
  std::uint64_t before = w.by_id.stats().invalidations + w.lists.stats().invalidations;
  CHECK(w.on_user.apply({5, 7, 5}) == std::vector<bool>{true, true, true});
  // user_5, user_7 and users_all: the repeated change and the shared list key once.
  CHECK(w.by_id.stats().invalidations + w.lists.stats().invalidations - before == 3);
  CHECK_FALSE(w.cached("user_5"));
  CHECK_FALSE(w.cached("user_7"));
  CHECK(w.cached("user_9"));
  CHECK_FALSE(w.cached("users_all"));
  CHECK(w.by_id.get(5) == "renamed5");
  CHECK_FALSE(w.by_id.get(7));
  CHECK(w.lists.get("users_all") == "renamed5;user9;");
  CHECK(w.on_user.apply({}).empty());
}

TEST_CASE("fanout: a cache a change does not touch is left alone", "[fanout]") {
  TwoCaches w;
  InvalidationFanout<long long> only_odd(w.by_id, [](long long id) { return id; });
  only_odd.add(w.lists, [](long long id) {
    return id % 2 ? std::optional<std::string>("users_all") : std::nullopt;
  });
  w.rows[2] = "user2";
  REQUIRE(w.by_id.get(2));
  REQUIRE(w.lists.get("users_all"));
  CHECK(only_odd.apply({2}) == std::vector<bool>{true});
  CHECK_FALSE(w.cached("user_2"));
  CHECK(w.cached("users_all"));
  InvalidationFanout<long long> many(w.lists, [](long long id) {
    return std::vector<std::string>{"users_all", "page_" + std::to_string(id / 10)};
  });
  CHECK(many.apply({2, 3}) == std::vector<bool>{true, true});
  CHECK_FALSE(w.cached("users_all"));
}

TEST_CASE("fanout: what memcached did not confirm is reported, and pending in its cache",
          "[fanout]") {
  TwoCaches w;
  w.rows[5] = "user5";
  REQUIRE(w.by_id.get(5));
  w.server.process.stop();
  CHECK(w.on_user.apply({5, 6}) == std::vector<bool>{false, false});
  CHECK(w.by_id.usage().pending == 2);
  CHECK(w.lists.usage().pending == 1);
  w.server.process.start();
  CHECK(eventually([&] { return w.by_id.retry_pending() + w.lists.retry_pending() == 0; }));
  CHECK(w.on_user.apply({5, 6}) == std::vector<bool>{true, true});
}
