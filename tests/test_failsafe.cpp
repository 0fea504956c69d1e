// Fail-safe: stale copies served when the loader fails, throttled; never after an
// invalidation. On a manual clock.
#include <catch2/catch.hpp>

#include "support/common.hpp"
#include "support/raw_client.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {
// Remaining memcached TTL of key, via the meta protocol.
int remaining_ttl(int port, const std::string& key) {
  RawClient raw(port);
  raw.send("mg " + key + " t\r\n");
  std::string line = raw.line();
  auto pos = line.find(" t");
  return pos == std::string::npos ? -2 : std::stoi(line.substr(pos + 2));
}
// A source of truth that can go down: the n-th load returns "v<n>", or throws while down.
struct FlakyDb {
  std::atomic<int> loads{0};
  std::atomic<bool> down{false};
  StringCache::Loader loader() {
    return [this](const std::string&) -> std::optional<std::string> {
      int n = ++loads;
      if (down) throw std::runtime_error("db down");
      return "v" + std::to_string(n);
    };
  }
};

// A 1 s TTL on the world's clock, no early refresh, max_stale as given.
Options expiring(const ManualWorld& w, std::chrono::milliseconds max_stale) {
  Options o = w.options();
  o.ttl = std::chrono::seconds(1);
  o.max_stale = max_stale;
  o.early_refresh_beta = 0;
  return o;
}

}  // namespace

TEST_CASE("memcached TTL is the TTL by default, TTL + max_stale with fail-safe", "[failsafe]") {
  Server srv;
  Options o;
  o.ttl = std::chrono::seconds(120);
  auto loader = [](const std::string&) { return std::optional<std::string>("v"); };
  StringCache plain(srv.store, loader, o);
  plain.get("plain");
  int t = remaining_ttl(srv.process.port(), "plain");
  CHECK(t >= 107);  // 120 s +- 10 %
  CHECK(t <= 133);  // + 1 s slack for memcached's clock
  o.max_stale = std::chrono::seconds(600);
  o.key_prefix = "fs_";
  StringCache safe(srv.store, loader, o);
  safe.get("x");
  t = remaining_ttl(srv.process.port(), "fs_x");
  CHECK(t >= 707);
  CHECK(t <= 733);
}

TEST_CASE("fail-safe serves the stale copy when the loader fails, throttled",
          "[failsafe][nostore]") {
  ManualWorld w;
  FlakyDb db;
  auto& loads = db.loads;
  auto& db_down = db.down;
  Options o = expiring(w, std::chrono::seconds(30));
  o.fail_safe_throttle = std::chrono::milliseconds(2000);
  StringCache c(w.store, db.loader(), o);
  CHECK(c.get("k") == "v1");
  w.clock->advance(1100ms);
  db_down = true;
  CHECK(c.get("k") == "v1");  // stale, loader failed
  CHECK(loads == 2);
  CHECK(c.get("k") == "v1");  // throttled: loader not called again
  CHECK(c.get("k") == "v1");
  CHECK(loads == 2);
  CHECK(c.stats().stale_served == 3);
  w.clock->advance(2100ms);
  CHECK(c.get("k") == "v1");  // throttle over: tried again, failed, stale again
  CHECK(loads == 3);
  db_down = false;
  w.clock->advance(2100ms);
  CHECK(c.get("k") == "v4");  // recovered
  // invalidated data is never served, even with the database down
  w.clock->advance(1100ms);
  db_down = true;
  c.invalidate("k");
  CHECK_THROWS_WITH(c.get("k"), "db down");
}

TEST_CASE("fail-safe ends at max_stale", "[failsafe][nostore]") {
  ManualWorld w;
  FlakyDb db;
  StringCache c(w.store, db.loader(), expiring(w, std::chrono::seconds(10)));
  c.get("k");
  db.down = true;
  w.clock->advance(5s);
  CHECK(c.get("k") == "v1");
  w.clock->advance(7s);  // 12 s after the load: past TTL + max_stale
  CHECK_THROWS_WITH(c.get("k"), "db down");
}

TEST_CASE("without max_stale a failing loader is the caller's error", "[failsafe][nostore]") {
  ManualWorld w;
  FlakyDb db;
  StringCache c(w.store, db.loader(), expiring(w, std::chrono::milliseconds(0)));
  c.get("k");
  w.clock->advance(1100ms);
  db.down = true;
  CHECK_THROWS(c.get("k"));
}
