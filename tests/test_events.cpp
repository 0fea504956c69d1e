// Events and counters for every outcome.
#include <catch2/catch.hpp>
#include <thread>

#include "support/common.hpp"
#include "support/fault_store.hpp"
#include "support/gate.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {
struct Seen {
  EventType type;
  std::string cache, key;
  std::chrono::nanoseconds duration;
  std::string reason;
};
}  // namespace

TEST_CASE("events and stats for every outcome", "[events]") {
  Server srv;
  std::mutex mu;
  std::vector<Seen> events;  // copies: an Event's views live only during the callback
  Options o;
  o.name = "users";
  o.on_event = [&](const Event& e) {
    std::lock_guard<std::mutex> l(mu);
    events.push_back(
        {e.type, std::string(e.cache), std::string(e.key), e.duration, std::string(e.reason)});
  };
  auto faults = std::make_shared<FaultStore>(srv.store);
  StringCache c(
      faults,
      [](const std::string& k) -> std::optional<std::string> {
        if (k == "boom") throw std::runtime_error("exploded");
        std::this_thread::sleep_for(2ms);  // a load that takes time: load_end's duration
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
    return std::count_if(events.begin(), events.end(), [&](const Seen& e) { return e.type == t; });
  };
  CHECK(count(EventType::miss) == 3);
  CHECK(count(EventType::hit) == 1);
  CHECK(count(EventType::load_start) == 3);
  CHECK(count(EventType::load_end) == 2);
  CHECK(count(EventType::load_error) == 1);
  CHECK(count(EventType::cache_error) == 1);
  for (const Seen& e : events) {
    CHECK(e.cache == "users");
    if (e.type == EventType::load_end) CHECK(e.duration >= 2ms);
    if (e.type == EventType::cache_error) CHECK(e.reason == "get: timeout");
    if (e.type == EventType::load_error) CHECK(e.reason == "exploded");
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
  auto store_b = make_store(srv.process.config());
  std::atomic<int> loads{0};
  Gate holding;
  auto slow = [&](const std::string&) -> std::optional<std::string> {
    ++loads;
    holding.arrive();
    return "v";
  };
  StringCache a(srv.store, slow), b(store_b, slow);
  std::thread t([&] { a.get("k"); });
  REQUIRE(holding.wait_arrival());  // a holds the lease and is loading
  std::optional<std::string> got;
  std::thread waiter([&] { got = b.get("k"); });
  CHECK(eventually([&] { return b.stats().lease_waits == 1; }));
  holding.open();
  t.join();
  waiter.join();
  CHECK(got == "v");
  CHECK(loads == 1);
  CHECK(b.stats().lease_waits == 1);
}
