// Loader timeouts: soft (serve stale, keep loading in the background) and hard
// (TimeoutError). Expiry on a manual clock; the timeouts themselves are real time.
#include <catch2/catch.hpp>
#include <thread>

#include "support/common.hpp"
#include "support/gate.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {
// A loader whose second call (the reload after expiry) parks on `second` until the test
// opens it; the n-th call returns "v<n>".
struct SlowReload {
  std::atomic<int> loads{0};
  Gate second;
  StringCache::Loader loader() {
    return [this](const std::string&) -> std::optional<std::string> {
      int n = ++loads;
      if (n == 2) second.arrive();
      return "v" + std::to_string(n);
    };
  }
};

// A 1 s TTL on the world's clock, 30 s of fail-safe, no early refresh.
Options expiring(const ManualWorld& w) {
  Options o = w.options();
  o.ttl = std::chrono::seconds(1);
  o.max_stale = std::chrono::seconds(30);
  o.early_refresh_beta = 0;
  return o;
}
}  // namespace

TEST_CASE("soft timeout returns stale and refreshes in the background", "[timeouts][nostore]") {
  ManualWorld w;
  SlowReload db;  // the refresh hangs until the test lets it go
  Gate& slow = db.second;
  Options o = expiring(w);
  o.soft_timeout = std::chrono::milliseconds(50);
  StringCache c(w.store, db.loader(), o);
  CHECK(c.get("k") == "v1");
  w.clock->advance(1100ms);
  auto start = std::chrono::steady_clock::now();
  CHECK(c.get("k") == "v1");  // stale, after the soft timeout
  CHECK(ms_since(start) < 1000);
  CHECK(c.stats().load_timeouts == 1);
  REQUIRE(slow.wait_arrival());
  slow.open();
  CHECK(eventually([&] { return c.peek("k") == "v2"; }));  // the background load stored it
}

TEST_CASE("without a soft timeout the caller waits for the slow loader", "[timeouts][nostore]") {
  ManualWorld w;
  SlowReload db;
  Gate& slow = db.second;
  StringCache c(w.store, db.loader(), expiring(w));
  c.get("k");
  w.clock->advance(1100ms);
  std::atomic<bool> returned{false};
  std::optional<std::string> got;
  std::thread caller([&] {
    got = c.get("k");
    returned = true;
  });
  REQUIRE(slow.wait_arrival());
  CHECK_FALSE(returned);  // the loader is still running: the caller is still waiting
  slow.open();
  caller.join();
  CHECK(got == "v2");
  CHECK(c.stats().stale_served == 0);
}

TEST_CASE("hard timeout throws TimeoutError when there is no stale copy", "[timeouts][nostore]") {
  ManualWorld w;
  Gate slow;
  Options o = w.options();
  o.hard_timeout = std::chrono::milliseconds(100);
  StringCache c(
      w.store,
      [&](const std::string&) -> std::optional<std::string> {
        slow.arrive();
        return "slow";
      },
      o);
  auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(c.get("k"), TimeoutError);
  CHECK(ms_since(start) < 1000);
  slow.open();
  CHECK(eventually([&] { return c.peek("k") == "slow"; }));  // the load still fills the cache
}
