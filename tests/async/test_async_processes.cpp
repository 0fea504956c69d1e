// The async cache across processes on one real memcached: the randomized checker
// with processes that mix blocking and async caches (no read older than a returned
// invalidation), its canary without leases, and a herd of coroutines in several
// processes on one cold key (one load). Helpers: tests/async/worker_async.cpp and
// tests/worker.cpp, over the meta protocol both.
#include <fcntl.h>
#include <unistd.h>

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/meta.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "support/common.hpp"
#include "support/fault_proxy.hpp"
#include "support/outages.hpp"
#include "support/processes.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

struct Mix {
  int blocking, async;  // processes of each kind
  int threads, tasks;   // callers in each: threads of a blocking one, coroutines of an async one
  int keys, ops;        // keys shared by all; operations per caller
};

struct Counts {
  int ops = 0, loads = 0, reads = 0, stale_reads = 0, stale_keys = 0;
  int unconfirmed = 0, unapplied = 0;  // invalidations memcached did not confirm; never applied
};

// A file of n zeroed words the processes map.
std::string shared_file(const char* pattern_prefix, std::size_t words) {
  std::string path = std::string("/tmp/") + pattern_prefix + "XXXXXX";
  int fd = ::mkstemp(path.data());
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(words * sizeof(std::uint64_t))) == 0);
  ::close(fd);
  return path;
}

int percent_of(int n) {
  int percent = env_int("CACHEASIDE_CHECKER_OPS_PERCENT", 100);
  return percent > 0 && percent < 100 ? n * percent / 100 : n;
}

// outages: the last process (an async one) is cut off from memcached (a partition: its bytes are
// lost both ways) that many times for 300 ms (3 poll timeouts) while the others go
// on, so some of its invalidations return unconfirmed and are applied later.
Counts run_mix(const Mix& m, const std::string& mode, unsigned seed, int outages = 0) {
  MemcachedProcess mc;
  FaultProxy proxy(mc.port());
  std::string path = shared_file("cacheaside_async_versions", 3 * std::size_t(m.keys));
  std::vector<std::string> cmds;
  for (int p = 0; p < m.blocking + m.async; ++p) {
    bool blocking = p < m.blocking;
    std::string common =
        " checker '" +
        (p == m.blocking + m.async - 1 && outages > 0 ? proxy.config() : mc.config()) + "' " +
        path + " " + std::to_string(m.keys);
    std::string tail = " " + std::to_string(blocking ? m.threads : m.tasks) + " " +
                       std::to_string(m.ops) + " " + mode + " " +
                       std::to_string(seed * 100 + static_cast<unsigned>(p));
    cmds.push_back(blocking ? "CACHEASIDE_TEST_STORE=meta " + std::string(CACHEASIDE_TEST_WORKER) +
                                  common + tail
                            : std::string(CACHEASIDE_ASYNC_WORKER) + common + tail);
  }
  Counts r;
  std::vector<std::string> outs;
  {
    Outages cut([&] { proxy.drop(); }, [&] { proxy.pass(); }, outages,
                std::chrono::milliseconds(300), std::chrono::milliseconds(100));
    outs = run_all(cmds);
  }
  for (const auto& o : outs) {
    int ops = 0, loads = 0, reads = 0, stale = 0, unconfirmed = 0, unapplied = 0;
    REQUIRE(std::sscanf(o.c_str(), "%d %d %d %d %d %d", &ops, &loads, &reads, &stale, &unconfirmed,
                        &unapplied) == 6);
    r.ops += ops;
    r.loads += loads;
    r.reads += reads;
    r.stale_reads += stale;
    r.unconfirmed += unconfirmed;
    r.unapplied += unapplied;
  }
  // Quiescent now: every cached value must equal the source.
  std::vector<std::uint64_t> versions(static_cast<std::size_t>(m.keys));
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, versions.data(), versions.size() * sizeof(std::uint64_t), 0) ==
          static_cast<ssize_t>(versions.size() * sizeof(std::uint64_t)));
  ::close(fd);
  ::unlink(path.c_str());
  Options o;
  o.key_prefix = "chk_";
  CacheAside<int, std::string, StringSerializer> view(
      std::make_shared<MetaStore>(mc.config()),
      [](const int&) -> std::optional<std::string> { return std::nullopt; }, o);
  for (int k = 0; k < m.keys; ++k) {
    auto cached = view.peek(k);
    if (cached && *cached != std::to_string(versions[static_cast<std::size_t>(k)])) ++r.stale_keys;
  }
  std::printf(
      "async checker %-8s %d blocking x %2d threads + %d async x %2d coroutines, %2d keys, "
      "seed %u: %6d ops, %6d reads, %5d loads, %4d stale reads, %d/%d keys stale at the end, "
      "%d invalidations unconfirmed (%d never applied)\n",
      mode.c_str(), m.blocking, m.threads, m.async, m.tasks, m.keys, seed, r.ops, r.reads, r.loads,
      r.stale_reads, r.stale_keys, m.keys, r.unconfirmed, r.unapplied);
  std::fflush(stdout);
  return r;
}

}  // namespace

TEST_CASE(
    "randomized checker, blocking and async processes mixed: no read older than a returned "
    "invalidation",
    "[async][processes][checker]") {
  const Mix mixes[] = {
      {2, 2, 4, 16, 8, 500},  // both kinds on few keys
      {0, 3, 0, 32, 4, 300},  // async processes only, hot keys
      {1, 3, 8, 8, 40, 400},  // many keys
  };
  for (Mix m : mixes) {
    m.ops = percent_of(m.ops);
    auto r = run_mix(m, "leases", 1);
    INFO(m.blocking << " blocking + " << m.async << " async processes on " << m.keys << " keys");
    CHECK(r.ops == m.blocking * m.threads * m.ops + m.async * m.tasks * m.ops);
    CHECK(r.stale_reads == 0);
    CHECK(r.stale_keys == 0);
    CHECK(r.unapplied == 0);
  }
}

TEST_CASE(
    "randomized checker, blocking and async processes mixed, one cut off from memcached at "
    "times: unconfirmed invalidations are held to what the README promises, no more",
    "[async][processes][checker]") {
  // The async process cut off returns its invalidations unconfirmed and applies them
  // later: none may be served old in its own process, nor in another once applied.
  Mix m{1, 2, 4, 16, 20, 1500};
  m.ops = percent_of(m.ops);
  auto r = run_mix(m, "leases", 2, 4);
  CHECK(r.ops == m.blocking * m.threads * m.ops + m.async * m.tasks * m.ops);
  CHECK(r.unconfirmed > 0);
  CHECK(r.stale_reads == 0);
  CHECK(r.stale_keys == 0);
  CHECK(r.unapplied == 0);
}

TEST_CASE("randomized checker over async processes finds stale reads when leases are off",
          "[async][processes][checker]") {
  // The canary: without leases, a load older than another process's invalidation is
  // stored and served, and the checker sees it.
  auto r = run_mix({0, 4, 0, 8, 40, 600}, "noleases", 1);
  CHECK(r.stale_reads > 0);
}

TEST_CASE("leases: 4 processes x 1,000 coroutines on a cold key load once", "[async][processes]") {
  MemcachedProcess mc;
  // Two counters the workers share: they start together and load once all have missed.
  std::string path = shared_file("cacheaside_async_stampede", 2);
  // Poll and connect timeouts a busy machine does not reach: a leader whose lookup
  // timed out would load on its own (each io thread starts 1,000 calls before it
  // sees its connection open).
  std::string config = mc.config() + " --POLL-TIMEOUT=5000 --CONNECT-TIMEOUT=5000";
  std::vector<std::string> cmds(
      4, std::string(CACHEASIDE_ASYNC_WORKER) + " stampede '" + config + "' 7 1000 " + path + " 4");
  auto outs = run_all(cmds);
  ::unlink(path.c_str());
  int loads = 0, wrong = 0, gave_up = 0, errors = 0;
  for (const auto& o : outs) {
    int l = 0, w = 0, g = 0, e = 0;
    REQUIRE(std::sscanf(o.c_str(), "%d %d %d %d", &l, &w, &g, &e) == 4);
    loads += l;
    wrong += w;
    gave_up += g;
    errors += e;
  }
  std::printf("async stampede: 4 processes x 1,000 coroutines, %d loader calls, %d cache errors\n",
              loads, errors);
  CHECK(wrong == 0);
  CHECK(gave_up == 0);  // every process met the others at the load, none timed out
  CHECK(loads == 1);
}
