// Group invalidation: a generation counter in memcached folded into every key.
#include <catch2/catch.hpp>

#include "support/common.hpp"
#include "support/fault_store.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

TEST_CASE("group invalidation bumps a generation, costs one round trip unless cached", "[group]") {
  Server srv;
  auto faults = std::make_shared<FaultStore>(srv.store);
  std::atomic<int> loads{0};
  Options o;
  o.key_prefix = "user_";
  o.group = "users";
  TestCache<int, std::string, StringSerializer> c(
      faults,
      [&](const int& id) -> std::optional<std::string> {
        ++loads;
        return std::to_string(id);
      },
      o);
  for (int i = 0; i < 5; ++i) c.get(i);
  faults->reset_counts();
  for (int i = 0; i < 5; ++i) c.get(i);
  CHECK(loads == 5);
  CHECK(faults->round_trips() == 10);  // generation + value per hit
  std::string before = c.cache_key(1);
  CHECK(before.rfind("user_1%g", 0) == 0);

  // another process's instance invalidates the whole group
  auto other_store = make_store(srv.process.config());
  TestCache<int, std::string, StringSerializer> other(
      other_store, [](const int& id) -> std::optional<std::string> { return std::to_string(id); },
      o);
  CHECK(other.invalidate_all());
  for (int i = 0; i < 5; ++i) c.get(i);
  CHECK(loads == 10);
  CHECK(c.cache_key(1) != before);

  Options cached = o;
  cached.group_cache = std::chrono::seconds(10);
  TestCache<int, std::string, StringSerializer> fast(
      faults, [](const int& id) -> std::optional<std::string> { return std::to_string(id); },
      cached);
  fast.get(1);
  faults->reset_counts();
  fast.get(1);
  CHECK(faults->round_trips() == 1);
}

TEST_CASE("the cached group generation expires on the injected clock", "[group][nostore]") {
  ManualWorld w;
  auto faults = std::make_shared<FaultStore>(w.store);
  Options o = w.options();
  o.group = "g";
  o.group_cache = std::chrono::seconds(5);
  StringCache c(
      faults, [](const std::string& k) { return std::optional<std::string>(k); }, o);
  c.get("a");
  faults->reset_counts();
  c.get("a");
  CHECK(faults->round_trips() == 1);  // generation from the process cache
  w.clock->advance(5100ms);
  faults->reset_counts();
  c.get("a");
  CHECK(faults->round_trips() == 2);  // read again
}

TEST_CASE("an unreadable group generation: get_many loads through the bulk loader, stores nothing",
          "[group][nostore]") {
  auto faults = std::make_shared<FaultStore>(std::make_shared<InMemoryStore>());
  Options o;
  o.group = "g";
  std::atomic<int> bulk_calls{0}, single{0};
  StringCache c(
      faults,
      [&](const std::string& k) -> std::optional<std::string> {
        ++single;
        return k;
      },
      [&](const std::vector<std::string>& ks) {
        ++bulk_calls;
        return std::vector<std::optional<std::string>>(ks.begin(), ks.end());
      },
      o);
  faults->fail = true;
  auto v = c.get_many({"a", "b", "a"});
  REQUIRE(v.size() == 3);
  CHECK(v[0] == "a");
  CHECK(v[1] == "b");
  CHECK(v[2] == "a");
  CHECK(bulk_calls == 1);
  CHECK(single == 0);
  CHECK(c.stats().cache_errors >= 1);
  CHECK(faults->sets + faults->adds + faults->cases == 0);  // nothing stored
}
