// Stampedes and stale sets, in one process and across processes.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include "support/common.hpp"
#include "support/fault_store.hpp"
#include "support/gate.hpp"
#include "support/processes.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

TEST_CASE("single-flight: 64 threads on a cold key share one load", "[concurrency]") {
  MemcachedProcess mc;
  // The followers join after the load began, so each looks again once it is stored: 64
  // threads on 16 connections, with a pool wait long enough for a loaded machine (a
  // look that fails loads on its own, which is right, but not what this checks).
  auto store = make_store(mc.config() + " --POLL-TIMEOUT=5000");
  std::atomic<int> loads{0};
  StringCache* cache = nullptr;
  StringCache c(store, [&](const std::string& k) -> std::optional<std::string> {
    ++loads;
    eventually([&] { return cache->stats().coalesced == 63; });  // everyone else has joined
    return "v" + k;
  });
  cache = &c;
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int i = 0; i < 64; ++i)
    ts.emplace_back([&] {
      if (c.get("hot") != "vhot") ++wrong;
    });
  for (auto& t : ts) t.join();
  CHECK(loads == 1);
  CHECK(wrong == 0);
  CHECK(c.stats().coalesced == 63);
}

TEST_CASE("single-flight off: the stampede is visible", "[concurrency]") {
  Server srv;
  std::atomic<int> loads{0};
  Options o;
  o.single_flight = false;
  o.leases = false;
  StringCache c(
      srv.store,
      [&](const std::string& k) -> std::optional<std::string> {
        ++loads;
        eventually([&] { return loads == 16; });  // all 16 are loading at once
        return "v" + k;
      },
      o);
  std::vector<std::thread> ts;
  for (int i = 0; i < 16; ++i) ts.emplace_back([&] { c.get("hot"); });
  for (auto& t : ts) t.join();
  std::printf("single-flight and leases off: 16 threads, %d loader calls\n", loads.load());
  CHECK(loads == 16);
}

TEST_CASE("single-flight shares the loader's exception", "[concurrency][nostore]") {
  auto store = std::make_shared<InMemoryStore>();
  std::atomic<int> loads{0};
  StringCache* cache = nullptr;
  StringCache c(store, [&](const std::string&) -> std::optional<std::string> {
    ++loads;
    eventually([&] { return cache->stats().coalesced == 15; });
    throw std::runtime_error("db down");
  });
  cache = &c;
  std::atomic<int> thrown{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 16; ++i)
    ts.emplace_back([&] {
      try {
        c.get("k");
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()) == "db down") ++thrown;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(loads == 1);
  CHECK(thrown == 16);
  // the lease marker was released: the next caller loads at once
  auto start = std::chrono::steady_clock::now();
  CHECK_THROWS(c.get("k"));
  CHECK(ms_since(start) < 500);
}

TEST_CASE("single-flight applies to get_many per key", "[concurrency]") {
  Server srv;
  std::atomic<int> single{0};
  std::mutex mu;
  std::map<int, int> loaded;
  Options o;
  o.key_prefix = "m_";
  TestCache<int, std::string, StringSerializer> c(
      srv.store,
      [&](const int& k) -> std::optional<std::string> {
        ++single;
        return std::to_string(k);
      },
      o);
  // Keys 1, 2 and 3: one leader each, the 7 other callers follow it.
  const std::uint64_t followers = 3 * 7;
  c.set_bulk_loader([&](const std::vector<int>& ks) {
    eventually([&] { return c.stats().coalesced >= followers; });  // everyone has joined
    std::vector<std::optional<std::string>> out;
    std::lock_guard<std::mutex> l(mu);
    for (int k : ks) {
      ++loaded[k];
      out.push_back(std::to_string(k));
    }
    return out;
  });
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      std::vector<int> ks = {1, 2, 3, t + 10};
      auto v = c.get_many(ks);
      for (size_t i = 0; i < ks.size(); ++i)
        if (v[i] != std::to_string(ks[i])) ++wrong;
    });
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);
  CHECK(single == 0);
  CHECK(c.stats().coalesced == followers);
  CHECK(loaded.size() == 3 + 8);
  for (auto& kv : loaded) CHECK(kv.second == 1);
}

namespace {
// Loader calls made by 4 processes x 16 threads getting one cold key.
int cross_process_stampede(bool leases) {
  Server srv;
  // Two counters the workers share: they start together and load once all have missed.
  char path[] = "/tmp/cacheaside_stampedeXXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, 2 * sizeof(std::uint64_t)) == 0);
  ::close(fd);
  // A poll (and pool) timeout that a busy machine does not reach: 16 followers look
  // again at once when the load ends, and one that timed out would load on its own.
  std::string config = srv.process.config() + " --POLL-TIMEOUT=5000";
  std::vector<std::string> cmds;
  for (int p = 0; p < 4; ++p)
    cmds.push_back(std::string(CACHEASIDE_TEST_WORKER) + " stampede '" + config + "' 7 16 " + path +
                   " 4" + (leases ? "" : " noleases"));
  auto outs = run_all(cmds);
  ::unlink(path);
  int total = 0, wrong = 0, gave_up = 0, cache_errors = 0;
  for (const auto& o : outs) {
    int l = 0, w = 0, g = 0, e = 0;
    REQUIRE(std::sscanf(o.c_str(), "%d %d %d %d", &l, &w, &g, &e) == 4);
    total += l;
    wrong += w;
    gave_up += g;
    cache_errors += e;
  }
  std::printf("stampede (leases %s): %d loader calls, %d cache errors\n", leases ? "on" : "off",
              total, cache_errors);
  CHECK(wrong == 0);
  CHECK(gave_up == 0);  // every process met the others at the load, none timed out
  return total;
}
}  // namespace

TEST_CASE("leases: 4 processes x 16 threads on a cold key load once", "[concurrency][processes]") {
  int total = cross_process_stampede(true);
  INFO("loader calls across 4 processes: " << total);
  CHECK(total == 1);
}

TEST_CASE("without leases every process loads the cold key", "[concurrency][processes]") {
  int total = cross_process_stampede(false);
  std::printf("leases off: 4 processes x 16 threads, %d loader calls\n", total);
  INFO("loader calls across 4 processes: " << total);
  CHECK(total == 4);  // single-flight still makes it one per process
}

TEST_CASE("a crashed lease holder blocks nobody past the lease TTL", "[concurrency][nostore]") {
  ManualWorld w;
  Options o = w.options();
  o.lease_wait = std::chrono::milliseconds(300);
  std::atomic<int> loads{0};
  StringCache c(
      w.store,
      [&](const std::string&) -> std::optional<std::string> {
        ++loads;
        return "v";
      },
      o);
  // A lease marker nobody will ever replace, as a crashed holder leaves it.
  REQUIRE(w.store->add("orphan", "dead-holder", envelope::lease_flags(), 3) == StoreStatus::ok);
  auto start = w.clock->now();
  CHECK(c.get("orphan") == "v");  // waited lease_wait, then loaded without storing
  CHECK(w.clock->now() - start >= 300ms);
  CHECK(w.clock->now() - start < 400ms);
  CHECK(c.stats().lease_timeouts == 1);
  CHECK(c.peek("orphan") == std::nullopt);
  w.clock->advance(3100ms);  // the marker's TTL
  CHECK(c.get("orphan") == "v");
  CHECK(c.get("orphan") == "v");
  CHECK(c.stats().hits == 1);
  CHECK(loads == 2);
}

namespace {
// A manual clock that calls a hook each time a cache pauses between lease polls.
struct WaitHookClock final : Clock {
  std::shared_ptr<ManualClock> inner;
  std::function<void()> on_wait;
  explicit WaitHookClock(std::shared_ptr<ManualClock> c) : inner(std::move(c)) {}
  time_point now() const override { return inner->now(); }
  std::int64_t unix_ms() const override { return inner->unix_ms(); }
  void sleep_for(std::chrono::nanoseconds d) override {
    if (on_wait) on_wait();
    inner->advance(d);
  }
};
}  // namespace

TEST_CASE("a get_many stores the keys it won before it waits for keys held elsewhere",
          "[concurrency][nostore]") {
  // Two get_manys in two processes, each holding a lease the other waits for, would
  // otherwise wait for each other until lease_wait, and every caller of those keys with
  // them. Here the other holder is a planted marker; what matters is that nothing this
  // caller won is still leased while it waits.
  ManualWorld w;
  auto clock = std::make_shared<WaitHookClock>(w.clock);
  Options o = w.options();
  o.clock = clock;
  o.lease_wait = std::chrono::milliseconds(300);
  StringCache c(
      w.store, [&](const std::string& k) -> std::optional<std::string> { return "v" + k; }, o);
  REQUIRE(w.store->add("held", "other-holder", envelope::lease_flags(), 30) == StoreStatus::ok);
  int waits = 0, won_still_leased = 0;
  clock->on_wait = [&] {
    ++waits;
    for (const char* k : {"a", "b"}) {
      StoreItem item;
      if (w.store->get(k, item) != StoreStatus::ok || item.flags == envelope::lease_flags())
        ++won_still_leased;  // still the lease, not the value
    }
  };
  auto v = c.get_many({"a", "held", "b"});
  CHECK(v == std::vector<std::optional<std::string>>{"va", "vheld", "vb"});
  CHECK(waits > 0);
  CHECK(won_still_leased == 0);
  CHECK(c.stats().lease_timeouts == 1);
  CHECK(c.usage().flights == 0);
}

namespace {
// A load that reads v1, then waits while another "process" writes v2 and invalidates.
// Returns what the cache holds afterwards.
std::optional<std::string> stale_set_scenario(bool leases) {
  Server srv;
  // Two stores = two processes' connection pools; separate CacheAside instances, so
  // in-process single-flight cannot help.
  auto store_b = make_store(srv.process.config());
  std::atomic<int> version{1};
  Gate loaded_old;  // the load has read v1 and waits for the invalidation
  Options o;
  o.leases = leases;
  o.ttl = std::chrono::seconds(60);
  StringCache a(
      srv.store,
      [&](const std::string&) -> std::optional<std::string> {
        std::string v = "v" + std::to_string(version.load());
        loaded_old.arrive();
        return v;
      },
      o);
  StringCache b(
      store_b,
      [&](const std::string&) -> std::optional<std::string> {
        return "v" + std::to_string(version.load());
      },
      o);
  std::thread reader([&] { CHECK(a.get("k") == "v1"); });
  REQUIRE(loaded_old.wait_arrival());
  version = 2;  // update the source of truth, then invalidate
  b.invalidate("k");
  loaded_old.open();
  reader.join();
  return b.peek("k");
}
}  // namespace

TEST_CASE("no stale set: a load older than an invalidate is not stored", "[concurrency]") {
  auto cached = stale_set_scenario(true);
  CHECK(cached != "v1");
}

TEST_CASE("with leases off the same interleaving stores the stale value", "[concurrency]") {
  // Shows that the test above can fail: without leases the old value lands after the
  // invalidation and stays for the whole TTL.
  auto cached = stale_set_scenario(false);
  CHECK(cached == "v1");
}

TEST_CASE("miss path round trips are as documented", "[concurrency][nostore]") {
  auto faults = std::make_shared<FaultStore>(std::make_shared<InMemoryStore>());
  StringCache c(faults, [](const std::string& k) { return std::optional<std::string>(k); });
  c.get("k");
  // get, add (lease), gets (lease CAS id), cas
  CHECK(faults->gets == 2);
  CHECK(faults->adds == 1);
  CHECK(faults->cases == 1);
  CHECK(faults->round_trips() == 4);
  faults->reset_counts();
  c.get("k");
  CHECK(faults->round_trips() == 1);  // a hit is one round trip

  Options plain;
  plain.leases = false;
  StringCache p(
      faults, [](const std::string& k) { return std::optional<std::string>(k); }, plain);
  faults->reset_counts();
  p.get("p");
  CHECK(faults->round_trips() == 2);  // get + set
}
