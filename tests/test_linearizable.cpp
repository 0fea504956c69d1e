// A read that begins after an invalidation has returned never gets the older
// value: each interleaving pinned with a store or loader that pauses, and the
// invalidation made by a second CacheAside on its own connections, as another
// process would.
#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <thread>

#include "support/common.hpp"
#include "support/fault_store.hpp"
#include "support/gate.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// Process A (paused through its FaultStore or loader) and process B, on one memcached.
struct TwoProcesses {
  Server srv;
  std::shared_ptr<FaultStore> a_store =
      std::make_shared<FaultStore>(make_store(srv.process.config()));
  std::atomic<int> version{1};
  std::function<void()> a_loading;  // called inside A's loader after it read the version

  StringCache::Loader loader_a() {
    return [this](const std::string&) -> std::optional<std::string> {
      std::string v = "v" + std::to_string(version.load());
      if (a_loading) a_loading();
      return v;
    };
  }
  std::optional<std::string> load_b(const std::string&) {
    return "v" + std::to_string(version.load());
  }
  // Writes the source of truth, then invalidates from B; returns when B's invalidate has.
  void update_and_invalidate_from_b(StringCache& b, const std::string& key) {
    version = 2;
    REQUIRE(b.invalidate(key));
  }
};

// The pinned race, once `leader` (already started) is parked at `gate` with its result
// sourced: `between` runs (a write), then `follow` starts and joins the leader's load,
// then the gate opens and both finish. The threads are joined whatever fails.
void join_late(const StringCache& c, Gate& gate, std::thread& leader,
               const std::function<void()>& between, const std::function<void()>& follow) {
  bool joined = false;
  std::thread late;
  try {
    if (gate.wait_arrival()) {
      between();
      late = std::thread(follow);
      joined = eventually([&] { return c.stats().coalesced >= 1; });
    }
  } catch (...) {
    gate.open();
    leader.join();
    if (late.joinable()) late.join();
    throw;
  }
  gate.open();
  leader.join();
  if (late.joinable()) late.join();
  REQUIRE(joined);
}

// A lease marker as another process holding the right to load leaves it.
void hold_lease(Store& s, const std::string& key) {
  REQUIRE(s.add(key, "someone-else", envelope::lease_flags(), 30) == StoreStatus::ok);
}

}  // namespace

TEST_CASE("a follower that joins after the leader's post-wait read looks again", "[linearizable]") {
  TwoProcesses p;
  StringCache b(p.srv.store, [&](const std::string& k) { return p.load_b(k); });
  StringCache a(p.a_store, p.loader_a());
  hold_lease(*p.srv.store, "k");
  // A's leader waits for the lease; its re-read finds v1 (the holder stored it).
  Gate marker_read, reread;
  std::atomic<int> gets{0};
  p.a_store->after = [&](const char* op, std::string_view key, StoreStatus st) {
    if (std::string_view(op) != "get" || key != "k" || st != StoreStatus::ok) return;
    int n = ++gets;
    if (n == 1) marker_read.arrive();
    if (n == 2) reread.arrive();
  };
  std::optional<std::string> first, second;
  std::thread leader([&] { first = a.get("k"); });
  REQUIRE(marker_read.wait_arrival());  // A saw the marker: it will wait, then read again
  REQUIRE(b.put("k", "v1"));            // meanwhile the holder stores v1
  marker_read.open();
  // The leader has read v1 and not yet published it; the late get begins after the
  // invalidation returned.
  join_late(
      a, reread, leader, [&] { p.update_and_invalidate_from_b(b, "k"); },
      [&] { second = a.get("k"); });
  CHECK(first == "v1");   // began before the invalidation: either value is right
  CHECK(second == "v2");  // began after it: never the older value
}

TEST_CASE("a follower that joins a load made without a lease looks again", "[linearizable]") {
  TwoProcesses p;
  StringCache b(p.srv.store, [&](const std::string& k) { return p.load_b(k); });
  Options o;
  o.lease_wait = 50ms;  // the holder never finishes: A loads without storing
  StringCache a(p.a_store, p.loader_a(), o);
  hold_lease(*p.srv.store, "k");
  Gate loading;
  std::atomic<int> loads{0};
  p.a_loading = [&] {
    if (++loads == 1) loading.arrive();
  };
  std::optional<std::string> first, second;
  std::thread leader([&] { first = a.get("k"); });  // its loader parks after reading version 1
  join_late(
      a, loading, leader, [&] { p.update_and_invalidate_from_b(b, "k"); },
      [&] { second = a.get("k"); });
  CHECK(first == "v1");
  CHECK(second == "v2");
  CHECK(a.stats().lease_timeouts == 1);
}

TEST_CASE("a follower that joins a load made while the store failed looks again",
          "[linearizable]") {
  TwoProcesses p;
  StringCache b(p.srv.store, [&](const std::string& k) { return p.load_b(k); });
  StringCache a(p.a_store, p.loader_a());
  p.a_store->fail_writes = true;  // A cannot take a lease: it loads without storing
  Gate loading;
  std::atomic<int> loads{0};
  p.a_loading = [&] {
    if (++loads == 1) loading.arrive();
  };
  std::optional<std::string> first, second;
  std::thread leader([&] { first = a.get("k"); });
  join_late(
      a, loading, leader,
      [&] {
        p.a_store->fail_writes = false;
        p.update_and_invalidate_from_b(b, "k");
      },
      [&] { second = a.get("k"); });
  CHECK(first == "v1");
  CHECK(second == "v2");
}

TEST_CASE("get_many: a follower of a bulk load made without a lease looks again",
          "[linearizable]") {
  TwoProcesses p;
  StringCache b(p.srv.store, [&](const std::string& k) { return p.load_b(k); });
  Gate loading;
  std::atomic<int> bulk_calls{0};
  Options o;
  o.lease_wait = 50ms;
  StringCache a(
      p.a_store, p.loader_a(),
      [&](const std::vector<std::string>& keys) {
        std::vector<std::optional<std::string>> out;
        for (std::size_t i = 0; i < keys.size(); ++i)
          out.push_back("v" + std::to_string(p.version.load()));
        // The keys it won ("other") load first; "k" after its lease wait timed out.
        bool k = std::find(keys.begin(), keys.end(), "k") != keys.end();
        if (k && ++bulk_calls == 1) loading.arrive();
        return out;
      },
      o);
  hold_lease(*p.srv.store, "k");
  std::vector<std::optional<std::string>> first, second;
  std::thread leader([&] { first = a.get_many({"k", "other"}); });
  join_late(
      a, loading, leader, [&] { p.update_and_invalidate_from_b(b, "k"); },
      [&] { second = a.get_many({"k"}); });
  REQUIRE(first.size() == 2);
  CHECK(first[0] == "v1");
  REQUIRE(second.size() == 1);
  CHECK(second[0] == "v2");
}

TEST_CASE("a follower that joined before the load began takes its result", "[linearizable]") {
  // The other side of the rule: sharing still works, no extra loads.
  TwoProcesses p;
  Gate loading;
  std::atomic<int> loads{0};
  StringCache a(p.a_store, p.loader_a());
  p.a_loading = [&] {
    if (++loads == 1) loading.arrive();
  };
  std::optional<std::string> first, second;
  std::thread leader([&] { first = a.get("k"); });
  join_late(
      a, loading, leader, [] {}, [&] { second = a.get("k"); });
  CHECK(first == "v1");
  CHECK(second == "v1");  // the cas proved it current after the follower joined
  CHECK(loads == 1);
}

TEST_CASE(
    "a stale copy read before an invalidation in this process reaches nobody who began after it",
    "[linearizable][nostore]") {
  ManualWorld w;
  auto store = std::make_shared<FaultStore>(w.store);
  Options o = w.options();
  o.ttl = std::chrono::seconds(1);
  o.max_stale = std::chrono::seconds(60);
  o.early_refresh_beta = 0;
  Gate stale_read, loading;
  std::atomic<int> loads{0};
  StringCache c(
      store,
      [&](const std::string&) -> std::optional<std::string> {
        int n = ++loads;
        if (n == 1) return "v1";
        if (n == 2) {
          loading.arrive();
          throw std::runtime_error("db down");  // the leader falls back to its stale copy
        }
        return "v2";
      },
      o);
  CHECK(c.get("k") == "v1");
  w.clock->advance(2s);  // v1 is stale now
  std::atomic<int> gets{0};
  store->after = [&](const char* op, std::string_view, StoreStatus st) {
    if (std::string_view(op) == "get" && st == StoreStatus::ok && ++gets == 1) stale_read.arrive();
  };
  std::optional<std::string> first, second;
  std::thread leader([&] { first = c.get("k"); });
  REQUIRE(stale_read.wait_arrival());  // A read the stale v1 and has not joined a flight
  REQUIRE(c.invalidate("k"));          // in this process, before A joins
  stale_read.open();
  // A leads a new flight and its load will fail; the late get begins after the
  // invalidation.
  join_late(
      c, loading, leader, [] {}, [&] { second = c.get("k"); });
  CHECK(first == "v1");   // began before the invalidation: its own stale copy is allowed
  CHECK(second == "v2");  // never the copy from before the invalidation
}
