// Helper process for the cross-process tests: several of these share one memcached.
//   worker stampede <config> <key> <threads> <sync_file> <processes> [noleases]
//       all processes' threads get key at once (the file holds two shared counters);
//       prints "<loader calls> <wrong values> <lease timeouts + 1 if not all settled>"
//   worker checker <config> <versions_file> <keys> <threads> <ops> <mode> <seed>
//       random get / get_many / update-then-invalidate against versions kept in a shared
//       file; mode: leases | noleases | nosingleflight | near (near cache on: a
//       read may miss another process's invalidation for near_sync, none of its own);
//       judged by support/floors.hpp; waits for its pending invalidations to apply, then
//       prints "<ops> <loads> <reads> <stale reads> <unconfirmed> <never applied>"
//   worker observe <config> <key> <want> <deadline_ms>
//       gets key (the loader answers want) every 2 ms until it answers want; prints
//       the unix ms it first did, or -1 at the deadline
//   worker near-observe <config> <versions_file> <key>
//       reads key (the loader answers the version in the file) through a near cache
//       until it hits near, prints "ready <value>", then reads every 0.2 ms until the
//       value changes; prints the unix ms at which its last read of the old value began
//   worker spool <config> <spool> <key>
//       invalidates key with a spool; prints "pending" if it failed, then sleeps
//       until killed
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/libmemcached.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "support/coherence.hpp"
#include "support/floors.hpp"
#include "support/store_choice.hpp"

using namespace cacheaside;
using cacheaside_test::make_store;
using Cache = CacheAside<int, std::string, StringSerializer>;

// Polls cond every 0.2 ms, up to 10 s; true once it holds (on false the caller
// goes on: the counts it prints tell).
template <class Cond>
static bool wait_until(Cond cond) {
  for (int i = 0; i < 50000 && !cond(); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  return cond();
}

static int stampede(char** argv) {
  auto store = make_store(argv[2]);
  int key = std::stoi(argv[3]);
  int threads = std::stoi(argv[4]);
  int fd = ::open(argv[5], O_RDWR);
  if (fd < 0) return 2;
  // ready: processes whose cache is up; settled: processes whose every caller
  // waits on the key's load (its own, or the lease holder's elsewhere).
  auto* shared = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, 2 * sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (shared == MAP_FAILED) return 2;
  std::atomic<std::uint64_t>& ready = shared[0];
  std::atomic<std::uint64_t>& settled = shared[1];
  std::uint64_t processes = std::stoull(argv[6]);
  std::atomic<int> loads{0};
  Options o;
  o.key_prefix = "stampede_";
  o.leases = argv[7] == nullptr || std::string(argv[7]) != "noleases";
  // The holder's load waits for every process: no waiter gives up on a busy machine.
  o.lease_wait = std::chrono::seconds(10);
  Cache c(
      store,
      [&](const int& k) -> std::optional<std::string> {
        ++loads;
        // Nothing is stored before every process has looked the key up and missed.
        wait_until([&] { return settled.load() == processes; });
        return "value" + std::to_string(k);
      },
      o);
  std::thread monitor([&] {
    bool all_waiting = wait_until([&] {
      Stats s = c.stats();  // the other callers follow this process's flight
      return s.coalesced == static_cast<std::uint64_t>(threads - 1) && s.loads + s.lease_waits > 0;
    });
    if (all_waiting) ++settled;
  });
  ++ready;
  wait_until([&] { return ready.load() == processes; });
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&] {
      if (c.get(key) != "value" + std::to_string(key)) ++wrong;
    });
  for (auto& t : ts) t.join();
  monitor.join();
  Stats s = c.stats();
  std::printf("%d %d %d %d\n", loads.load(), wrong.load(),
              static_cast<int>(s.lease_timeouts + (settled.load() < processes)),
              static_cast<int>(s.cache_errors));
  return 0;
}

static int checker(char** argv) {
  auto store = make_store(argv[2]);
  int fd = ::open(argv[3], O_RDWR);
  if (fd < 0) return 2;
  int keys = std::stoi(argv[4]);
  // versions[k]: the source of truth; invalidated[k]: highest version whose invalidation
  // is a floor for every process (support/floors.hpp says when). A read that starts
  // after that must not return anything older. settled[k] (near mode): the same,
  // near_sync later.
  auto* versions = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, 3 * sizeof(std::uint64_t) * keys, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (versions == MAP_FAILED) return 2;
  auto* invalidated = versions + keys;
  auto* settled = versions + 2 * keys;
  int threads = std::stoi(argv[5]);
  int ops = std::stoi(argv[6]);
  std::string mode = argv[7];  // leases | noleases | nosingleflight
  unsigned seed = static_cast<unsigned>(std::stoul(argv[8]));
  std::atomic<int> loads{0};
  auto load = [&](int k) {
    ++loads;
    std::string v = std::to_string(versions[k].load());
    // Database latency, 150-450 us: gives writers a window to race the load.
    std::this_thread::sleep_for(std::chrono::microseconds(150 + (k * 37 + loads) % 300));
    return v;
  };
  Options o;
  o.key_prefix = "chk_";
  o.ttl = std::chrono::seconds(300);
  o.leases = mode != "noleases";
  o.single_flight = mode != "nosingleflight";
  o.lease_wait = std::chrono::milliseconds(200);
  bool near = mode == "near";
  if (near) {
    o.near_ttl = std::chrono::seconds(60);
    o.near_sync = std::chrono::milliseconds(100);
  }
  // Near mode: this process's own invalidations must be seen at once (floors.own),
  // other processes' within near_sync: a settler raises settled[k] to a version
  // near_sync after it became a floor for them (late is lenient, never strict).
  std::mutex settle_mu;
  std::deque<std::tuple<std::chrono::steady_clock::time_point, int, std::uint64_t>> to_settle;
  std::atomic<bool> done{false};
  std::thread settler([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::lock_guard<std::mutex> lock(settle_mu);
      while (!to_settle.empty() &&
             std::get<0>(to_settle.front()) <= std::chrono::steady_clock::now()) {
        auto [due, k, v] = to_settle.front();
        to_settle.pop_front();
        cacheaside_test::InvalidationFloors::raise(settled[k], v);
      }
    }
  });
  cacheaside_test::InvalidationFloors floors(keys, [&](int k, std::uint64_t v) {
    cacheaside_test::InvalidationFloors::raise(invalidated[k], v);
    if (!near) return;
    std::lock_guard<std::mutex> lock(settle_mu);
    to_settle.emplace_back(std::chrono::steady_clock::now() + o.near_sync, k, v);
  });
  auto floor_of = [&](int k) {
    return std::max(floors.own(k), near ? settled[k].load() : invalidated[k].load());
  };
  Cache c(
      store, [&](const int& k) -> std::optional<std::string> { return load(k); },
      [&](const std::vector<int>& ks) {
        std::vector<std::optional<std::string>> out;
        for (int k : ks) out.push_back(load(k));
        return out;
      },
      o);
  auto settle = [&] {
    floors.settle([&] { return c.usage().pending; },
                  [&] { return c.stats().invalidations_dropped; });
  };
  std::atomic<int> stale_reads{0}, reads{0};
  auto check = [&](const std::optional<std::string>& v, std::uint64_t floor) {
    ++reads;
    if (!v || std::stoull(*v) < floor) ++stale_reads;
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(seed * 1000 + static_cast<unsigned>(t));
      for (int i = 0; i < ops; ++i) {
        int k = static_cast<int>(rng() % static_cast<unsigned>(keys));
        unsigned op = rng() % 10;
        if (op < 5) {
          std::uint64_t floor = floor_of(k);
          check(c.get(k), floor);
        } else if (op < 7) {  // get_many of three keys (duplicates allowed)
          std::vector<int> ks = {k, static_cast<int>(rng() % static_cast<unsigned>(keys)),
                                 static_cast<int>(rng() % static_cast<unsigned>(keys))};
          std::vector<std::uint64_t> floors;
          for (int x : ks) floors.push_back(floor_of(x));
          auto vs = c.get_many(ks);
          for (std::size_t j = 0; j < ks.size(); ++j) check(vs[j], floors[j]);
        } else {
          std::uint64_t v = versions[k].fetch_add(1) + 1;  // write the source, then invalidate
          floors.returned(k, v, c.invalidate(k));
        }
        settle();
      }
    });
  for (auto& t : ts) t.join();
  // What is still pending is retried in the background: wait for it (bounded), so the
  // test's check of what is cached at the end judges applied invalidations only.
  wait_until([&] {
    settle();
    return floors.unapplied() == 0;
  });
  done = true;
  settler.join();
  std::printf("%d %d %d %d %d %d\n", threads * ops, loads.load(), reads.load(), stale_reads.load(),
              floors.unconfirmed(), floors.unapplied());
  return 0;
}

static long long unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Another process that reads a key through its own cache: when does it stop
// seeing the old value?
static int observe(char** argv) {
  auto store = make_store(argv[2]);
  int key = std::stoi(argv[3]);
  std::string want = argv[4];
  long long deadline = unix_ms() + std::stoll(argv[5]);
  Options o;
  o.ttl = std::chrono::seconds(120);
  o.early_refresh_beta = 0;
  Cache c(
      store, [&](const int&) -> std::optional<std::string> { return want; }, o);
  while (unix_ms() < deadline) {
    if (c.get(key) == want) {
      std::printf("%lld\n", unix_ms());
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf("-1\n");
  return 0;
}

static int near_observe(char** argv) {
  auto store = make_store(argv[2]);
  int fd = ::open(argv[3], O_RDWR);
  if (fd < 0) return 2;
  auto* version = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (version == MAP_FAILED) return 2;
  int key = std::stoi(argv[4]);
  Options o = cacheaside_test::coherence_options();
  Cache c(
      store,
      [&](const int&) -> std::optional<std::string> { return std::to_string(version->load()); }, o);
  std::string old;
  for (int i = 0; i < 10000 && c.stats().near_hits == 0; ++i) old = c.get(key).value_or("");
  if (c.stats().near_hits == 0) return 3;
  std::printf("ready %s\n", old.c_str());
  std::fflush(stdout);
  long long last_old = 0;
  long long deadline = unix_ms() + 10000;
  while (unix_ms() < deadline) {
    long long began = unix_ms();
    if (c.get(key) != old) {
      std::printf("%lld\n", last_old);
      return 0;
    }
    last_old = began;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  std::printf("-1\n");
  return 0;
}

static int spool(char** argv) {
  auto store = make_store(argv[2]);
  Options o;
  o.invalidation_spool = argv[3];
  o.invalidation_retry = std::chrono::seconds(60);  // this process dies before any retry
  Cache c(
      store, [](const int&) -> std::optional<std::string> { return "loaded"; }, o);
  if (!c.invalidate(std::stoi(argv[4]))) std::printf("pending\n");
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

int main(int argc, char** argv) {
  if (argc >= 7 && std::string(argv[1]) == "stampede") return stampede(argv);
  if (argc >= 9 && std::string(argv[1]) == "checker") return checker(argv);
  if (argc >= 6 && std::string(argv[1]) == "observe") return observe(argv);
  if (argc >= 5 && std::string(argv[1]) == "spool") return spool(argv);
  if (argc >= 5 && std::string(argv[1]) == "near-observe") return near_observe(argv);
  std::fprintf(stderr, "usage: see the comment at the top of worker.cpp\n");
  return 2;
}
