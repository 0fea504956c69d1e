// One CacheAside through a million distinct keys: every in-process table stays within
// its bound, and the process's memory stays flat after a warm-up. On a manual clock
// over a bounded InMemoryStore (the store's size is the store's business).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "support/common.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;  // their allocators keep freed memory on purpose
#else
constexpr bool sanitized = false;
#endif

// Resident set size of this process, in KiB.
long rss_kb() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

TEST_CASE("a million distinct keys: tables stay bounded, memory stays flat", "[soak][churn]") {
  ManualWorld w;
  w.store->set_max_items(50000);
  Options o = w.options();
  o.ttl = std::chrono::seconds(1);
  o.max_stale = std::chrono::seconds(10);
  o.fail_safe_throttle = std::chrono::hours(1);  // every failed key rests: the table fills
  o.group = "churn";
  o.group_cache = std::chrono::milliseconds(500);
  o.early_refresh_beta = 0;
  using Cache = TestCache<long, std::string, StringSerializer>;
  std::uint64_t loads = 0;
  // Keys divisible by 5 fail on their second load: with a stale copy, fail-safe serves
  // it and throttles the key.
  std::vector<char> loaded_once(1u << 21, 0);
  auto load = [&](long k) -> std::optional<std::string> {
    ++loads;
    auto& seen = loaded_once[static_cast<std::size_t>(k) & ((1u << 21) - 1)];
    if (k % 5 == 0 && seen) throw std::runtime_error("db down for " + std::to_string(k));
    seen = 1;
    if (k % 11 == 0) return std::nullopt;  // cached absences too
    return "value-" + std::to_string(k);
  };
  Cache c(
      w.store, [&](const long& k) { return load(k); },
      [&](const std::vector<long>& ks) {
        std::vector<std::optional<std::string>> out;
        for (long k : ks) {
          try {
            out.push_back(load(k));
          } catch (const std::exception&) {
            out.push_back(std::nullopt);
          }
        }
        return out;
      },
      o);

  const long n = sanitized ? 200000 : 1000000;
  // Warm once the throttle first reaches its bound: every table is then at its largest.
  long warm = 0, rss_warm = 0, errors = 0;
  std::size_t max_throttled = 0, max_flights = 0;
  for (long i = 1; i <= n; ++i) {
    w.clock->advance(std::chrono::milliseconds(1));
    try {
      c.get(i);
      // A key loaded 1.5 s ago is stale now; keys % 5 fail to reload: served stale.
      if (i > 1500 && (i - 1500) % 5 == 0) c.get(i - 1500);
    } catch (const std::exception&) {
      ++errors;  // a failing key without a stale copy (invalidated, or its group moved on)
    }
    if (i % 16 == 0) c.get_many({i, i - 1, i + 1});
    if (i % 8 == 0) c.invalidate(i - 2);
    if (i % 100000 == 0) c.invalidate_all();
    if (i % 1000 == 0) {
      Usage u = c.usage();
      max_throttled = std::max(max_throttled, u.throttled);
      max_flights = std::max(max_flights, u.flights);
      if (!warm && u.throttled >= detail::FailSafeThrottle::max_keys * 95 / 100) {
        warm = i;
        rss_warm = rss_kb();
      }
    }
  }
  long rss_end = rss_kb();
  Stats s = c.stats();
  std::printf(
      "churn: %ld keys, %llu loads, %llu stale served, %ld loader errors seen; throttle max %zu "
      "(bound %zu), flights max %zu; RSS %ld kB at key %ld (warm) -> %ld kB at key %ld\n",
      n, static_cast<unsigned long long>(s.loads), static_cast<unsigned long long>(s.stale_served),
      errors, max_throttled, detail::FailSafeThrottle::max_keys, max_flights, rss_warm, warm,
      rss_end, n);
  CHECK(s.loads >= static_cast<std::uint64_t>(n));
  CHECK(s.stale_served > 0);
  CHECK(max_throttled > detail::FailSafeThrottle::max_keys / 2);  // the bound was reached
  CHECK(max_throttled <= detail::FailSafeThrottle::max_keys);
  CHECK(max_flights == 0);  // one thread: every flight ends with its call
  CHECK(w.store->size() <= 50000);
  if (!sanitized) {
    REQUIRE(warm > 0);
    CHECK(warm <= n * 3 / 4);              // a long stretch is left to measure
    CHECK(rss_end - rss_warm < 2 * 1024);  // flat: < 2 MiB over the rest
  }
}
