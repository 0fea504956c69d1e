// Faults with figures: a server without CAS ids, the tail of a get through a kill, a
// restart and a freeze, and no reply ever taken for another key's under tiny
// timeouts and a server that keeps freezing. Each runs over both stores.
#include <signal.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "support/common.hpp"
#include "support/fault_proxy.hpp"
#include "support/fault_store.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// A cache over a real memcached behind a FaultProxy, for tests whose lease on key
// "k" gets lost; `on_load` runs at each load, after counting it.
struct LostLease {
  MemcachedProcess mc;
  FaultProxy proxy{mc.port()};
  std::atomic<int> loads{0};
  StringCache c;

  explicit LostLease(std::function<void(LostLease&)> on_load = {})
      : c(
            make_store(proxy.config()),
            [this, on_load](const std::string& k) -> std::optional<std::string> {
              ++loads;
              if (on_load) on_load(*this);
              return "v" + k;
            },
            options()) {}

  static Options options() {
    Options o;
    o.lease_ttl = std::chrono::seconds(10);  // the lease outlives the outage
    o.lease_wait = std::chrono::milliseconds(2000);
    return o;
  }

  // After the network heals: the lease is left in memcached, and the next get must
  // load at once (no lease_wait) and store what it loaded (unless `stored` is false:
  // the lease is left standing, as nobody can tell it is ours).
  void check_next_get(const char* what, bool stored = true) {
    proxy.pass();
    REQUIRE(eventually([&] { return c.put("probe", "1"); }));  // the store answers again
    auto t0 = std::chrono::steady_clock::now();
    CHECK(c.get("k") == "vk");
    long long ms = ms_since(t0);
    std::printf("get after %s (%s): %lld ms\n", what, meta_store() ? "MetaStore" : "MemcachedStore",
                ms);
    CHECK(ms < 300 * env_int("CACHEASIDE_TIMING_SCALE", 1));
    CHECK(c.stats().lease_timeouts == 0);
    CHECK(loads == 2);
    CHECK(c.get("k") == "vk");  // the second load was stored, or loaded again
    CHECK(loads == (stored ? 2 : 3));
    CHECK(c.stats().lease_timeouts == 0);
  }
};

}  // namespace

TEST_CASE("a server without CAS ids (-C): one event, then single-flight and plain sets",
          "[reliability]") {
  MemcachedProcess mc({"-C"});
  auto store = make_store(mc.config());
  std::mutex mu;
  std::vector<std::string> degraded;
  Options o;
  o.on_event = [&](const Event& e) {
    if (e.type != EventType::leases_degraded) return;
    std::lock_guard<std::mutex> lock(mu);
    degraded.emplace_back(e.reason);
  };
  std::map<std::string, std::string> rows = {{"hot", "v1"}};
  std::atomic<int> loads{0};
  StringCache* cache = nullptr;
  StringCache c(
      store,
      [&](const std::string& k) -> std::optional<std::string> {
        // The first load of "hot" waits until the 15 other callers have joined it.
        if (++loads == 1) eventually([&] { return cache->stats().coalesced == 15; });
        std::lock_guard<std::mutex> lock(mu);
        auto it = rows.find(k);
        if (it == rows.end()) return "row:" + k;
        return it->second;
      },
      o);
  cache = &c;
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int i = 0; i < 16; ++i)
    ts.emplace_back([&] {
      if (c.get("hot") != "v1") ++wrong;
    });
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);
  CHECK(c.stats().coalesced == 15);
  CHECK(loads == 1);            // single-flight in this process
  CHECK(c.get("hot") == "v1");  // stored with a plain set: a hit
  CHECK(loads == 1);
  for (int i = 0; i < 10; ++i) c.get("k" + std::to_string(i));
  for (int i = 0; i < 10; ++i) CHECK(c.get("k" + std::to_string(i)) == "row:k" + std::to_string(i));
  CHECK(loads == 11);
  {
    std::lock_guard<std::mutex> lock(mu);
    rows["hot"] = "v2";
  }
  CHECK(c.invalidate("hot"));
  CHECK(c.get("hot") == "v2");
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(degraded.size() == 1);
  CHECK(degraded.front().find("CAS") != std::string::npos);
  CHECK(c.stats().cache_errors == 0);
}

// [alone]: a timing bound; ctest runs these with nothing else on the machine's 2 cores.
TEST_CASE("every get stays within 3x the poll timeout through a kill then a restart then a freeze",
          "[reliability][slow][alone]") {
  const int runs = env_int("CACHEASIDE_TAIL_RUNS", 2);
  const auto poll = std::chrono::milliseconds(100);  // the stores' default
  long long worst_all = 0;
  for (int run = 0; run < runs; ++run) {
    MemcachedProcess mc;
    auto store = make_store(mc.config());
    Database db;
    for (int i = 0; i < 20; ++i) db.db["k" + std::to_string(i)] = "v" + std::to_string(i);
    StringCache c(store, db.loader());
    std::atomic<bool> stop{false};
    std::atomic<long long> worst{0};
    std::atomic<int> wrong{0}, gets{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        std::mt19937 rng(static_cast<unsigned>(run * 10 + t));
        while (!stop) {
          std::string k = "k" + std::to_string(rng() % 20);
          auto t0 = std::chrono::steady_clock::now();
          auto v = c.get(k);
          long long ms = ms_since(t0);
          if (v != db.db.at(k)) ++wrong;
          ++gets;
          for (long long w = worst; ms > w && !worst.compare_exchange_weak(w, ms);) {
          }
        }
      });
    std::thread writer;
    // Joined however the run ends: a fault step that throws must not leave them running.
    struct JoinAll {
      std::atomic<bool>& stop;
      std::vector<std::thread>& ts;
      std::thread& writer;
      ~JoinAll() {
        stop = true;
        for (auto& t : ts)
          if (t.joinable()) t.join();
        if (writer.joinable()) writer.join();
      }
    } join_all{stop, ts, writer};
    writer = std::thread([&] {  // a few invalidations: leases keep coming
      std::mt19937 rng(static_cast<unsigned>(run));
      while (!stop) {
        c.invalidate("k" + std::to_string(rng() % 20));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    // A stretch of time the gets ride out: a fault's length, or healthy traffic.
    auto last = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
    // Each fault begins once the store serves hits (again, after the one before).
    auto serving = [&] {
      return eventually([&] {
        auto h = c.stats().hits;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a rate: hits per 20 ms
        return c.stats().hits > h + 10;
      });
    };
    // The gets met the fault: they failed over to the loader meanwhile.
    auto met = [&](std::uint64_t errors_before) {
      return eventually([&] { return c.stats().cache_errors > errors_before; });
    };
    REQUIRE(serving());
    auto errors = c.stats().cache_errors;
    mc.stop();  // killed
    last(300);
    REQUIRE(met(errors));
    mc.start();  // restarted, empty
    REQUIRE(serving());
    last(200);  // healthy traffic between two faults
    errors = c.stats().cache_errors;
    mc.pause();  // frozen for a second: longer than 3 poll timeouts
    last(1000);
    REQUIRE(met(errors));
    mc.resume();
    REQUIRE(serving());
    last(200);
    stop = true;
    for (auto& t : ts) t.join();
    writer.join();
    // Invalidations the faults left pending are applied before the cache goes (the
    // retries may not have come round yet on a loaded machine).
    CHECK(eventually([&] { return c.retry_pending() == 0; }));
    std::printf("tail run %d (%s): %d gets, %llu cache errors, worst %lld ms\n", run + 1,
                meta_store() ? "MetaStore" : "MemcachedStore", gets.load(),
                static_cast<unsigned long long>(c.stats().cache_errors), worst.load());
    CHECK(wrong == 0);
    worst_all = std::max(worst_all, worst.load());
  }
  // Sanitizer builds run several times slower on the same 2 cores: their presets
  // widen timing bounds (CACHEASIDE_TIMING_SCALE); the bound itself is the dev build's.
  CHECK(worst_all <= 3 * poll.count() * env_int("CACHEASIDE_TIMING_SCALE", 1));
}

TEST_CASE(
    "no reply is ever taken for another key under tiny timeouts and a server that keeps freezing",
    "[reliability][slow]") {
  const long long target = env_int("CACHEASIDE_STRESS_OPS", 1000000);
  MemcachedProcess mc;
  // Several stores on the server, each with its own tiny poll timeout.
  std::vector<std::shared_ptr<Store>> stores;
  // (MetaStore would skip the server after two failures in a row: here every call
  // must reach it.)
  std::string keep = meta_store() ? " --SERVER-FAILURE-LIMIT=1000" : "";
  for (int ms : {1, 2, 5, 20})
    stores.push_back(make_store(mc.config() + keep + " --POLL-TIMEOUT=" + std::to_string(ms)));
  auto key = [](std::uint32_t i) { return "key" + std::to_string(i); };
  auto owns = [](const std::string& k, const std::string& v) {
    return v.size() > k.size() && v.compare(0, k.size(), k) == 0 && v[k.size()] == '=';
  };
  {
    auto setup = make_store(mc.config());
    for (std::uint32_t i = 0; i < 500; ++i)
      REQUIRE(setup->set(key(i), key(i) + "=" + std::string(i * 7 % 3000, 'x'), 0, 0) ==
              StoreStatus::ok);
  }
  std::atomic<bool> stop{false};
  std::atomic<long long> ops{0}, ok{0}, failed{0}, wrong{0};  // ops: calls answered
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t + 1));
      Store& s = *stores[static_cast<std::size_t>(t) % stores.size()];
      StoreItem item;
      std::vector<StoreItem> items;
      std::vector<char> found;
      std::vector<std::string> keys;
      while (!stop && ops < target) {
        unsigned dice = rng() % 100;
        if (dice < 55) {
          std::string k = key(rng() % 500);
          StoreStatus st = s.get(k, item);
          if (!is_failure(st)) ++ops;
          if (st == StoreStatus::ok) {
            ++ok;
            if (!owns(k, item.value)) ++wrong;
          } else if (st != StoreStatus::not_found) {
            ++failed;
          }
        } else if (dice < 85) {
          keys.clear();
          std::uint32_t first = rng() % 480;
          for (std::uint32_t i = 0; i < 16; ++i) keys.push_back(key(first + i));
          StoreStatus st = s.get_multi(keys, items, found);
          if (st == StoreStatus::ok) ops += 16;
          if (st != StoreStatus::ok) ++failed;
          for (std::size_t i = 0; i < keys.size(); ++i) {
            if (!found[i]) continue;
            ++ok;
            if (!owns(keys[i], items[i].value)) ++wrong;
          }
        } else {
          std::string k = key(rng() % 500);
          StoreStatus st = s.set(k, k + "=" + std::string(rng() % 3000, 'y'), 0, 0);
          if (!is_failure(st)) ++ops;
          if (is_failure(st)) ++failed;
        }
      }
    });
  std::thread freezer([&] {
    std::mt19937 rng(99);
    while (!stop && ops < target) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 130));
      mc.pause();
      std::this_thread::sleep_for(std::chrono::milliseconds(1 + rng() % 40));
      mc.resume();
    }
  });
  auto t0 = std::chrono::steady_clock::now();
  while (ops < target && ms_since(t0) < 120000)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  for (auto& t : ts) t.join();
  freezer.join();
  std::printf(
      "mixed-up replies (%s): %lld operations in %lld ms, %lld values, %lld failed "
      "calls, %lld values for another key\n",
      meta_store() ? "MetaStore" : "MemcachedStore", ops.load(), ms_since(t0), ok.load(),
      failed.load(), wrong.load());
  CHECK(ops >= target);
  CHECK(wrong == 0);
  CHECK(failed > 0);  // the faults did happen
  CHECK(ok > ops / 10);
}

TEST_CASE("a lease this process could not give back does not make its callers wait",
          "[reliability]") {
  LostLease t([](LostLease& self) {
    if (self.loads == 1) self.proxy.drop();  // a partition while we hold the lease
  });
  CHECK(t.c.get("k") == "vk");  // its store and the lease's release are lost
  t.check_next_get("an abandoned lease");
}

TEST_CASE("a lease taken by a request that went unanswered does not make callers wait",
          "[reliability]") {
  LostLease t;
  // The request taking the lease reaches the server; its reply is lost.
  t.proxy.drop_replies_after(meta_store() ? "mg k " : "add k ");
  CHECK(t.c.get("k") == "vk");
  CHECK(t.c.stats().cache_errors == 1);
  // Classic knows the marker it sent (its value) and deletes it; memcached's meta
  // placeholder carries no mark, so one newer than the lost read may be another
  // caller's live lease: it is neither deleted nor waited for, the get loads past it.
  t.check_next_get("a lease request went unanswered", !meta_store());
}

TEST_CASE("a caller waits for a busy pool's connection instead of failing at once",
          "[reliability]") {
  MemcachedProcess mc;
  FaultProxy proxy(mc.port());
  // The poll timeout bounds the pool wait too: long enough that no scheduling hiccup
  // between the wait starting and the reply's release can end it.
  auto store = make_store(proxy.config("--POOL-MAX=1 --POLL-TIMEOUT=5000"));
  Database db;
  db.db["a"] = "va";
  db.db["b"] = "vb";
  StringCache c(store, db.loader());
  REQUIRE(c.get("a") == "va");
  REQUIRE(c.get("b") == "vb");
  auto errors = c.stats().cache_errors;
  // Three times: one caller holds the only connection (its reply held by the proxy),
  // the other is seen waiting for it, then the reply goes through: both are served.
  for (int i = 0; i < 3; ++i) {
    proxy.hold_replies();
    int reads = proxy.client_reads();
    std::optional<std::string> got_a, got_b;
    std::thread first([&] { got_a = c.get("a"); });
    REQUIRE(eventually([&] { return proxy.client_reads() > reads; }));  // a's get is out
    std::thread second([&] { got_b = c.get("b"); });
    bool waited = eventually([&] { return pool_waiters(*store) == 1; });
    proxy.release_replies();
    first.join();
    second.join();
    REQUIRE(waited);
    CHECK(got_a == "va");
    CHECK(got_b == "vb");
  }
  CHECK(c.stats().cache_errors == errors);
  CHECK(pool_waiters(*store) == 0);
}

TEST_CASE("a full pool costs a get no more than the server's silence", "[reliability][alone]") {
  MemcachedProcess mc;
  auto store = make_store(mc.config() + " --POOL-MAX=1");
  Database db;
  db.db["k"] = "v";
  StringCache c(store, db.loader());
  CHECK(c.get("k") == "v");
  mc.pause();  // the one connection is held by whoever waits for the server
  std::atomic<long long> worst{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        if (c.get("k") != "v") ++wrong;
        long long ms = ms_since(t0);
        for (long long w = worst; ms > w && !worst.compare_exchange_weak(w, ms);) {
        }
      }
    });
  for (auto& t : ts) t.join();
  mc.resume();
  std::printf("a full pool (%s): worst get %lld ms\n",
              meta_store() ? "MetaStore" : "MemcachedStore", worst.load());
  CHECK(wrong == 0);
  // At most three poll timeouts (100 ms each): a wait for the connection, then the
  // lookup and the lease's add, each unanswered; plus 50 ms for the scheduler (one
  // run measured 301 ms on that path, most measure 200).
  CHECK(worst <= 350 * env_int("CACHEASIDE_TIMING_SCALE", 1));
}

namespace {
// memcached behind a network that loses the reply of the next add after running it.
struct AddReplyLost : FaultStore {
  using FaultStore::FaultStore;
  bool lose_add_reply = false;
  S add(std::string_view k, std::string_view v, std::uint32_t fl, Exptime e) override {
    S st = FaultStore::add(k, v, fl, e);
    return lose_add_reply ? S::timeout : st;
  }
};
}  // namespace

TEST_CASE("a lease left behind is deleted by a later caller here when the first delete fails",
          "[reliability][nostore]") {
  auto store = std::make_shared<AddReplyLost>(std::make_shared<InMemoryStore>());
  LookupPolicy policy;
  policy.codec = StringSerializer::codec;
  policy.lease_ttl = std::chrono::seconds(10);
  detail::ClassicProtocol protocol(store, policy);
  Lookup l;
  protocol.lookup("k", l);
  REQUIRE(l.state == LookupState::absent);
  store->lose_add_reply = true;  // the marker lands; this process never hears so
  protocol.acquire("k", l);
  REQUIRE(l.state == LookupState::error);
  store->lose_add_reply = false;
  store->failure = StoreStatus::timeout;
  store->fail_removes = true;  // the first caller to find it cannot delete it either
  protocol.lookup("k", l);
  CHECK(l.state == LookupState::busy);
  store->fail_removes = false;
  protocol.lookup("k", l);  // the next one does, and may load at once
  CHECK(l.state == LookupState::absent);
  protocol.acquire("k", l);
  CHECK(l.state == LookupState::won);
}
