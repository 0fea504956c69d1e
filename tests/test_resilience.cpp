// Fail-safe, loader timeouts, early refresh, group invalidation, events.
#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "support/common.hpp"
#include "support/fault_store.hpp"
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

TEST_CASE("fail-safe serves the stale copy when the loader fails, throttled", "[failsafe][slow]") {
  Server srv;
  std::atomic<int> loads{0};
  std::atomic<bool> db_down{false};
  Options o;
  o.ttl = std::chrono::seconds(1);
  o.ttl_jitter = 0;
  o.max_stale = std::chrono::seconds(30);
  o.fail_safe_throttle = std::chrono::milliseconds(2000);
  o.early_refresh_beta = 0;
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        ++loads;
        if (db_down) throw std::runtime_error("db down");
        return "v" + std::to_string(loads.load());
      },
      o);
  CHECK(c.get("k") == "v1");
  std::this_thread::sleep_for(1100ms);
  db_down = true;
  CHECK(c.get("k") == "v1");  // stale, loader failed
  CHECK(loads == 2);
  CHECK(c.get("k") == "v1");  // throttled: loader not called again
  CHECK(c.get("k") == "v1");
  CHECK(loads == 2);
  CHECK(c.stats().stale_served == 3);
  std::this_thread::sleep_for(2100ms);
  CHECK(c.get("k") == "v1");  // throttle over: tried again, failed, stale again
  CHECK(loads == 3);
  db_down = false;
  std::this_thread::sleep_for(2100ms);
  CHECK(c.get("k") == "v4");  // recovered
  // invalidated data is never served, even with the database down
  std::this_thread::sleep_for(1100ms);
  db_down = true;
  c.invalidate("k");
  CHECK_THROWS_WITH(c.get("k"), "db down");
}

TEST_CASE("without max_stale a failing loader is the caller's error", "[failsafe][slow]") {
  Server srv;
  std::atomic<bool> db_down{false};
  Options o;
  o.ttl = std::chrono::seconds(1);
  o.ttl_jitter = 0;
  o.early_refresh_beta = 0;
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        if (db_down) throw std::runtime_error("db down");
        return "v";
      },
      o);
  c.get("k");
  std::this_thread::sleep_for(1100ms);
  db_down = true;
  CHECK_THROWS(c.get("k"));
}

TEST_CASE("soft timeout returns stale and refreshes in the background", "[timeouts][slow]") {
  Server srv;
  std::atomic<int> loads{0};
  std::atomic<int> delay_ms{0};
  Options o;
  o.ttl = std::chrono::seconds(1);
  o.ttl_jitter = 0;
  o.max_stale = std::chrono::seconds(30);
  o.soft_timeout = std::chrono::milliseconds(50);
  o.early_refresh_beta = 0;
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        int n = ++loads;
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
        return "v" + std::to_string(n);
      },
      o);
  CHECK(c.get("k") == "v1");
  std::this_thread::sleep_for(1100ms);
  delay_ms = 1500;
  auto start = std::chrono::steady_clock::now();
  CHECK(c.get("k") == "v1");
  CHECK(ms_since(start) < 1000);
  std::this_thread::sleep_for(2000ms);
  CHECK(c.peek("k") == "v2");  // the background load stored its result
  CHECK(c.stats().load_timeouts == 1);
}

TEST_CASE("without a soft timeout the caller waits for the slow loader", "[timeouts][slow]") {
  Server srv;
  std::atomic<int> delay_ms{0};
  Options o;
  o.ttl = std::chrono::seconds(1);
  o.ttl_jitter = 0;
  o.max_stale = std::chrono::seconds(30);
  o.early_refresh_beta = 0;
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
        return "v";
      },
      o);
  c.get("k");
  std::this_thread::sleep_for(1100ms);
  delay_ms = 1200;
  auto start = std::chrono::steady_clock::now();
  CHECK(c.get("k") == "v");
  CHECK(ms_since(start) >= 1200);
}

TEST_CASE("hard timeout throws TimeoutError when there is no stale copy", "[timeouts]") {
  Server srv;
  Options o;
  o.hard_timeout = std::chrono::milliseconds(100);
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        std::this_thread::sleep_for(1500ms);
        return "slow";
      },
      o);
  auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(c.get("k"), TimeoutError);
  CHECK(ms_since(start) < 1000);
  std::this_thread::sleep_for(2000ms);
  CHECK(c.peek("k") == "slow");
}

namespace {
struct HotKeyRun {
  Stats stats;
  std::vector<long long> refresh_margins_ms;  // expiry - refresh time
};

HotKeyRun hot_key(double beta) {
  Server srv;
  Options o;
  o.ttl = std::chrono::seconds(2);
  o.ttl_jitter = 0;
  o.early_refresh_beta = beta;
  std::mutex mu;
  HotKeyRun run;
  std::atomic<long long> expiry{0};
  o.on_event = [&](const Event& e) {
    if (e.type == EventType::early_refresh) {
      std::lock_guard<std::mutex> l(mu);
      run.refresh_margins_ms.push_back(expiry.load() - cacheaside::SystemClock().unix_ms());
    }
  };
  StringCache c(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        std::this_thread::sleep_for(50ms);
        expiry = cacheaside::SystemClock().unix_ms() + 2000;
        return "v";
      },
      o);
  c.get("hot");  // cold start: the only miss there should be
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      while (ms_since(start) < 6000) {
        c.get("hot");
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    });
  for (auto& t : ts) t.join();
  run.stats = c.stats();
  return run;
}
}  // namespace

TEST_CASE("early refresh: hot keys refresh before expiry, no miss burst", "[early][slow]") {
  auto run = hot_key(1.0);
  INFO("misses " << run.stats.misses << ", early refreshes " << run.stats.early_refreshes);
  CHECK(run.stats.misses == 1);  // only the cold start
  CHECK(run.stats.coalesced == 0);
  CHECK(run.stats.early_refreshes >= 2);
  CHECK(run.stats.loads == 1 + run.stats.early_refreshes);
  std::set<long long> margins(run.refresh_margins_ms.begin(), run.refresh_margins_ms.end());
  for (long long m : run.refresh_margins_ms) CHECK(m > 0);  // before expiry
  CHECK(margins.size() >= 2);                               // spread, not one fixed point

  std::printf("early refresh on: %llu miss (the cold start), %llu early refreshes\n",
              static_cast<unsigned long long>(run.stats.misses),
              static_cast<unsigned long long>(run.stats.early_refreshes));
  auto off = hot_key(0.0);
  std::printf("early refresh off: %llu misses, %llu coalesced waits at expiry\n",
              static_cast<unsigned long long>(off.stats.misses),
              static_cast<unsigned long long>(off.stats.coalesced));
  CHECK(off.stats.early_refreshes == 0);
  CHECK(off.stats.misses >= 3);  // a miss (and a wait) at every expiry
}

TEST_CASE("group invalidation bumps a generation, costs one round trip unless cached", "[group]") {
  Server srv;
  auto faults = std::make_shared<FaultStore>(srv.store);
  std::atomic<int> loads{0};
  Options o;
  o.key_prefix = "user_";
  o.group = "users";
  CacheAside<int, std::string, StringSerializer> c(
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
  auto other_store = std::make_shared<MemcachedStore>(srv.process.config());
  CacheAside<int, std::string, StringSerializer> other(
      other_store, [](const int& id) -> std::optional<std::string> { return std::to_string(id); },
      o);
  CHECK(other.invalidate_all());
  for (int i = 0; i < 5; ++i) c.get(i);
  CHECK(loads == 10);
  CHECK(c.cache_key(1) != before);

  Options cached = o;
  cached.group_cache = std::chrono::seconds(10);
  CacheAside<int, std::string, StringSerializer> fast(
      faults, [](const int& id) -> std::optional<std::string> { return std::to_string(id); },
      cached);
  fast.get(1);
  faults->reset_counts();
  fast.get(1);
  CHECK(faults->round_trips() == 1);
}

TEST_CASE("events and stats for every outcome", "[events]") {
  Server srv;
  std::mutex mu;
  std::vector<Event> events;
  std::vector<std::string> reasons;
  Options o;
  o.name = "users";
  o.on_event = [&](const Event& e) {
    std::lock_guard<std::mutex> l(mu);
    events.push_back(e);
    reasons.emplace_back(e.reason);
  };
  auto faults = std::make_shared<FaultStore>(srv.store);
  StringCache c(
      faults,
      [](const std::string& k) -> std::optional<std::string> {
        if (k == "boom") throw std::runtime_error("exploded");
        std::this_thread::sleep_for(2ms);
        return "v";
      },
      o);
  c.get("a");
  c.get("a");
  CHECK_THROWS(c.get("boom"));
  faults->fail = true;
  faults->failure = StoreStatus::timeout;
  c.get("a");
  faults->fail = false;
  auto count = [&](EventType t) {
    return std::count_if(events.begin(), events.end(), [&](const Event& e) { return e.type == t; });
  };
  CHECK(count(EventType::miss) == 3);
  CHECK(count(EventType::hit) == 1);
  CHECK(count(EventType::load_start) == 3);
  CHECK(count(EventType::load_end) == 2);
  CHECK(count(EventType::load_error) == 1);
  CHECK(count(EventType::cache_error) == 1);
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].type == EventType::load_end) CHECK(events[i].duration >= 2ms);
    if (events[i].type == EventType::cache_error) CHECK(reasons[i] == "get: timeout");
    if (events[i].type == EventType::load_error) CHECK(reasons[i] == "exploded");
  }
  auto s = c.stats();
  CHECK(s.hits == 1);
  CHECK(s.misses == 3);
  CHECK(s.loads == 3);
  CHECK(s.load_errors == 1);
  CHECK(s.cache_errors == 1);
}

TEST_CASE("lease waiters are counted and get the holder's value", "[events]") {
  Server srv;
  auto store_b = std::make_shared<MemcachedStore>(srv.process.config());
  std::atomic<int> loads{0};
  auto slow = [&](const std::string&) -> std::optional<std::string> {
    ++loads;
    std::this_thread::sleep_for(200ms);
    return "v";
  };
  StringCache a(srv.store, slow), b(store_b, slow);
  std::thread t([&] { a.get("k"); });
  std::this_thread::sleep_for(50ms);
  CHECK(b.get("k") == "v");
  t.join();
  CHECK(loads == 1);
  CHECK(b.stats().lease_waits == 1);
}
