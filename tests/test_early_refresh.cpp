// XFetch early refresh: hot keys reload before they expire, one caller at a time.
// Six seconds of a hot key, on a manual clock.
#include <catch2/catch.hpp>
#include <set>

#include "support/common.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {
struct HotKeyRun {
  Stats stats;
  std::vector<long long> refresh_margins_ms;  // expiry - refresh time
};

// A get every millisecond for 6 s of a key with a 2 s TTL and a 50 ms load.
HotKeyRun hot_key(double beta) {
  ManualWorld w;
  Options o = w.options();
  o.ttl = std::chrono::seconds(2);
  o.early_refresh_beta = beta;
  HotKeyRun run;
  long long expiry = 0;
  o.on_event = [&](const Event& e) {
    if (e.type == EventType::early_refresh)
      run.refresh_margins_ms.push_back(expiry - w.clock->unix_ms());
  };
  StringCache c(
      w.store,
      [&](const std::string&) -> std::optional<std::string> {
        w.clock->advance(50ms);  // the load takes 50 ms
        expiry = w.clock->unix_ms() + 2000;
        return "v";
      },
      o);
  c.get("hot");  // cold start: the only miss there should be
  auto start = w.clock->now();
  while (w.clock->now() - start < 6s) {
    c.get("hot");
    w.clock->advance(1ms);
  }
  run.stats = c.stats();
  return run;
}
}  // namespace

TEST_CASE("early refresh: hot keys refresh before expiry, no miss burst", "[early][nostore]") {
  auto run = hot_key(1.0);
  INFO("misses " << run.stats.misses << ", early refreshes " << run.stats.early_refreshes);
  CHECK(run.stats.misses == 1);  // only the cold start
  CHECK(run.stats.early_refreshes >= 2);
  CHECK(run.stats.loads == 1 + run.stats.early_refreshes);
  std::set<long long> margins(run.refresh_margins_ms.begin(), run.refresh_margins_ms.end());
  for (long long m : run.refresh_margins_ms) CHECK(m > 0);  // before expiry
  CHECK(margins.size() >= 2);                               // spread, not one fixed point
  std::printf("early refresh on: %llu miss (the cold start), %llu early refreshes\n",
              static_cast<unsigned long long>(run.stats.misses),
              static_cast<unsigned long long>(run.stats.early_refreshes));

  auto off = hot_key(0.0);
  std::printf("early refresh off: %llu misses (one at every expiry)\n",
              static_cast<unsigned long long>(off.stats.misses));
  CHECK(off.stats.early_refreshes == 0);
  CHECK(off.stats.misses == 3);  // the cold start and the expiries at 2.05 s and 4.1 s
}

TEST_CASE("early refresh against memcached: a real server, a real clock", "[early]") {
  Server srv;
  Options o;
  o.ttl = std::chrono::seconds(2);
  o.ttl_jitter = 0;
  o.early_refresh_beta = 1e6;  // always due: every hit refreshes
  std::atomic<int> loads{0};
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        ++loads;
        // XFetch weighs the load's time: a load measured at 0 us is never due early.
        std::this_thread::sleep_for(1ms);
        return "v" + std::to_string(loads.load());
      },
      o);
  CHECK(c.get("hot") == "v1");
  CHECK(c.get("hot") == "v2");  // a hit that refreshed: the new value
  CHECK(c.peek("hot") == "v2");
  CHECK(c.stats().early_refreshes == 1);
}
