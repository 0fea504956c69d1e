// The randomized checker: processes x threads of get, get_many and
// update-then-invalidate on a versioned source in shared memory, against a real
// memcached. A read is stale when it returns a version older than what the README
// promises (support/floors.hpp): one whose invalidation memcached confirmed before the
// read began (in any process), or one this process invalidated unconfirmed, or one
// another process invalidated unconfirmed and has since seen applied.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

#include "support/common.hpp"
#include "support/fault_proxy.hpp"
#include "support/outages.hpp"
#include "support/processes.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

struct Shape {
  int processes, threads, keys, ops_per_thread;
};

struct CheckerResult {
  int ops = 0, loads = 0, reads = 0, stale_reads = 0, stale_keys = 0;
  int unconfirmed = 0, unapplied = 0;  // invalidations memcached did not confirm; never applied
  int outages = 0;
};

// outages: the first process is cut off from memcached (a partition: its bytes are
// lost both ways) that many times for 300 ms (3 poll timeouts) while the others go
// on, so some of its invalidations return unconfirmed and are applied later.
CheckerResult run_checker(const Shape& shape, const std::string& mode, unsigned seed,
                          int outages = 0) {
  Server srv;
  FaultProxy proxy(srv.process.port());
  char path[] = "/tmp/cacheaside_versionsXXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  std::vector<std::uint64_t> zero(3 * shape.keys, 0);
  REQUIRE(::write(fd, zero.data(), zero.size() * sizeof(std::uint64_t)) ==
          static_cast<ssize_t>(zero.size() * sizeof(std::uint64_t)));
  std::vector<std::string> cmds;
  for (int p = 0; p < shape.processes; ++p)
    cmds.push_back(std::string(CACHEASIDE_TEST_WORKER) + " checker '" +
                   (p == 0 && outages > 0 ? proxy.config() : srv.process.config()) + "' " + path +
                   " " + std::to_string(shape.keys) + " " + std::to_string(shape.threads) + " " +
                   std::to_string(shape.ops_per_thread) + " " + mode + " " +
                   std::to_string(seed * 100 + static_cast<unsigned>(p)));
  CheckerResult r;
  std::vector<std::string> outs;
  {
    Outages cut([&] { proxy.drop(); }, [&] { proxy.pass(); }, outages,
                std::chrono::milliseconds(300), std::chrono::milliseconds(100));
    outs = run_all(cmds);
    r.outages = cut.begun();
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
  std::vector<std::uint64_t> versions(shape.keys);
  REQUIRE(::pread(fd, versions.data(), shape.keys * sizeof(std::uint64_t), 0) ==
          static_cast<ssize_t>(shape.keys * sizeof(std::uint64_t)));
  ::close(fd);
  ::unlink(path);
  Options o;
  o.key_prefix = "chk_";
  TestCache<int, std::string, StringSerializer> view(
      srv.store, [](const int&) -> std::optional<std::string> { return std::nullopt; }, o);
  for (int k = 0; k < shape.keys; ++k) {
    auto cached = view.peek(k);
    if (cached && *cached != std::to_string(versions[k])) ++r.stale_keys;
  }
  return r;
}

// The sanitizer presets run fewer operations per thread (CACHEASIDE_CHECKER_OPS_PERCENT):
// each is several times slower there, and what they hunt is instrumented.
Shape scaled(Shape s) {
  int percent = env_int("CACHEASIDE_CHECKER_OPS_PERCENT", 100);
  if (percent > 0 && percent < 100) s.ops_per_thread = s.ops_per_thread * percent / 100;
  return s;
}

void report(const char* mode, const Shape& s, unsigned seed, const CheckerResult& r) {
  std::printf(
      "checker %-14s %d proc x %2d threads, %2d keys, seed %u: %6d ops, %6d reads, %5d loads, "
      "%4d stale reads, %d/%d keys stale at the end, %d invalidations unconfirmed (%d never "
      "applied), %d outages\n",
      mode, s.processes, s.threads, s.keys, seed, r.ops, r.reads, r.loads, r.stale_reads,
      r.stale_keys, s.keys, r.unconfirmed, r.unapplied, r.outages);
  std::fflush(stdout);
}

}  // namespace

TEST_CASE("randomized checker: no read older than a returned invalidation, in any shape",
          "[concurrency][processes][checker]") {
  const Shape shapes[] = {
      {2, 8, 8, 900},   // few keys, many threads per process
      {1, 16, 2, 500},  // two hot keys, one process
      {4, 4, 40, 600},  // many processes, more keys
      {6, 2, 4, 700},   // many processes, few keys
  };
  // Two seeds per shape; the sanitizer presets run one (each run there is several
  // times slower, and what they hunt is instrumented, not left to chance).
  const unsigned seeds = static_cast<unsigned>(env_int("CACHEASIDE_CHECKER_SEEDS", 2));
  for (unsigned seed = 1; seed <= seeds; ++seed) {
    for (const Shape& full : shapes) {
      const Shape s = scaled(full);
      auto r = run_checker(s, "leases", seed);
      report("leases", s, seed, r);
      INFO("shape " << s.processes << "x" << s.threads << " on " << s.keys << " keys, seed "
                    << seed);
      CHECK(r.ops == s.processes * s.threads * s.ops_per_thread);
      CHECK(r.stale_reads == 0);
      CHECK(r.stale_keys == 0);
      CHECK(r.unapplied == 0);
    }
  }
}

TEST_CASE(
    "randomized checker, one process cut off from memcached at times: unconfirmed "
    "invalidations are held to what the README promises, no more",
    "[concurrency][processes][checker]") {
  // Each outage outlasts the poll timeout three times: the process's invalidations
  // meanwhile return unconfirmed, stay pending, and apply once it reaches memcached
  // again. A judge that took them for confirmed would count the other processes'
  // reads of the old value meanwhile as stale.
  for (const char* mode : {"leases", "near"}) {
    const Shape s = scaled({3, 4, 20, 3000});
    auto r = run_checker(s, mode, 1, 4);
    report(mode, s, 1, r);
    CHECK(r.ops == s.processes * s.threads * s.ops_per_thread);
    CHECK(r.unconfirmed > 0);
    CHECK(r.stale_reads == 0);
    CHECK(r.stale_keys == 0);
    CHECK(r.unapplied == 0);
  }
}

TEST_CASE("randomized checker finds stale reads when leases are off (the canary)",
          "[concurrency][processes][checker]") {
  // Shows the checker can fail: without leases, loads older than an invalidation are
  // stored and served.
  const Shape s{4, 4, 40, 600};
  auto r = run_checker(s, "noleases", 1);
  report("noleases", s, 1, r);
  CHECK(r.stale_reads > 0);
}

TEST_CASE(
    "randomized checker with the near cache on: another process's invalidation is seen "
    "within near_sync, this process's at once",
    "[concurrency][processes][checker][near]") {
  const Shape shapes[] = {
      {4, 4, 8, 1500},  // many processes, few keys: near hits race invalidations
      {2, 8, 2, 1500},  // two hot keys
  };
  for (const Shape& full : shapes) {
    const Shape s = scaled(full);
    auto r = run_checker(s, "near", 1);
    report("near", s, 1, r);
    CHECK(r.ops == s.processes * s.threads * s.ops_per_thread);
    CHECK(r.stale_reads == 0);
    CHECK(r.stale_keys == 0);
    CHECK(r.unapplied == 0);
  }
}
