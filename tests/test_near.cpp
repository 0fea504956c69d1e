// The near cache: hot values answered in-process, coherent across processes
// through an invalidation log in memcached.
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>

#include "support/coherence.hpp"
#include "support/common.hpp"
#include "support/fault_store.hpp"
#include "support/gate.hpp"
#include "support/processes.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// One store (in memory, on a manual clock) shared by several caches that stand
// for processes; a database they all load from.
struct NearWorld : Database {
  ManualWorld base;
  std::shared_ptr<FaultStore> store = std::make_shared<FaultStore>(base.store);

  Options options() {
    Options o = base.options();
    o.name = "near";
    o.ttl = std::chrono::seconds(60);
    o.early_refresh_beta = 0;
    o.near_ttl = std::chrono::seconds(30);
    o.near_sync = std::chrono::hours(1);  // synced by hand: sync_near()
    return o;
  }
  std::unique_ptr<StringCache> cache(Options o) {
    return std::make_unique<StringCache>(store, loader(), o);
  }
};

}  // namespace

TEST_CASE("a near hit answers without a round trip, decoded", "[near][nostore]") {
  NearWorld w;
  auto c = w.cache(w.options());
  w.db["a"] = "1";
  CHECK(c->get("a") == "1");  // miss: loaded, stored
  CHECK(c->get("a") == "1");  // memcached hit: kept near
  w.store->reset_counts();
  for (int i = 0; i < 100; ++i) CHECK(c->get("a") == "1");
  CHECK(w.store->round_trips() == 0);
  CHECK(c->stats().near_hits == 100);
  CHECK(c->stats().hits == 101);
  CHECK(c->usage().near == 1);
  CHECK(c->get("missing") == std::nullopt);
  CHECK(c->get("missing") == std::nullopt);  // a negative entry is kept near too
  w.store->reset_counts();
  CHECK(c->get("missing") == std::nullopt);
  CHECK(w.store->round_trips() == 0);
  CHECK(c->get_many({"a", "missing", "a"}) ==
        std::vector<std::optional<std::string>>{"1", std::nullopt, "1"});
  CHECK(w.store->round_trips() == 0);
}

TEST_CASE("writes here drop the near entry before they return", "[near][nostore]") {
  NearWorld w;
  Options o = w.options();
  o.group = "g";
  o.group_cache = std::chrono::seconds(60);
  auto c = w.cache(o);
  w.db["a"] = "1";
  c->get("a");
  c->get("a");
  REQUIRE(c->usage().near == 1);

  w.db["a"] = "2";
  CHECK(c->invalidate("a"));
  CHECK(c->get("a") == "2");
  c->get("a");
  w.db["a"] = "3";
  CHECK(c->put("a", "3"));
  CHECK(c->get("a") == "3");
  c->get("a");
  w.db["a"] = "4";
  CHECK(c->invalidate_all());
  CHECK(c->get("a") == "4");
}

TEST_CASE("a near entry never outlives its memcached TTL, nor near_ttl", "[near][nostore]") {
  NearWorld w;
  Options o = w.options();
  o.ttl = std::chrono::seconds(10);
  o.ttl_jitter = 0;
  o.near_ttl = std::chrono::seconds(60);
  auto c = w.cache(o);
  w.db["a"] = "1";
  c->get("a");
  c->get("a");
  w.base.clock->advance(std::chrono::milliseconds(9900));
  int loads = w.loads;
  CHECK(c->get("a") == "1");
  CHECK(w.loads == loads);
  w.db["a"] = "2";
  w.base.clock->advance(std::chrono::milliseconds(200));  // past the memcached TTL
  CHECK(c->get("a") == "2");

  o.ttl = std::chrono::seconds(60);
  o.near_ttl = std::chrono::seconds(5);
  auto d = w.cache(o);
  d->get("b");
  d->get("b");
  w.store->reset_counts();
  d->get("b");
  CHECK(w.store->round_trips() == 0);
  w.base.clock->advance(std::chrono::seconds(5));
  d->get("b");
  CHECK(w.store->round_trips() == 1);  // memcached again
}

TEST_CASE("another process's write is seen at its next log read", "[near][nostore]") {
  NearWorld w;
  auto a = w.cache(w.options());
  auto b = w.cache(w.options());
  w.db["k"] = "1";
  a->get("k");
  a->get("k");
  b->get("k");
  REQUIRE(b->usage().near == 1);
  w.db["k"] = "2";
  CHECK(a->invalidate("k"));
  CHECK(b->get("k") == "1");  // not read the log yet: the bound is near_sync
  b->sync_near();
  CHECK(b->get("k") == "2");
  CHECK(b->stats().near_log_gaps == 0);

  b->get("k");  // near again
  w.db["k"] = "3";
  CHECK(a->put("k", "3"));
  b->sync_near();
  CHECK(b->get("k") == "3");
}

TEST_CASE("every record of one log read is applied, from 2 to a full ring", "[near][nostore]") {
  for (int n : {2, 3, 17, 1024}) {
    DYNAMIC_SECTION(n << " records in one read") {
      NearWorld w;
      auto a = w.cache(w.options());
      auto b = w.cache(w.options());
      for (int i = 0; i < n; ++i) {
        std::string k = "k" + std::to_string(i);
        w.db[k] = "old";
        b->get(k);
        b->get(k);
      }
      REQUIRE(b->usage().near == static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        std::string k = "k" + std::to_string(i);
        w.db[k] = "new";
        REQUIRE(a->invalidate(k));
      }
      b->sync_near();
      b->sync_near();  // a second read finds nothing new: it must not certify a lost record
      CHECK(b->usage().near == 0);
      int old = 0;
      for (int i = 0; i < n; ++i) old += b->get("k" + std::to_string(i)) == "old";
      CHECK(old == 0);
      CHECK(b->stats().near_log_gaps == 0);
    }
  }
}

TEST_CASE("more writes than the log holds: the reader drops everything", "[near][nostore]") {
  NearWorld w;
  auto a = w.cache(w.options());
  auto b = w.cache(w.options());
  w.db["keep"] = "1";
  b->get("keep");
  b->get("keep");
  REQUIRE(b->usage().near == 1);
  for (int i = 0; i < 1100; ++i) a->invalidate("x" + std::to_string(i));
  b->sync_near();
  CHECK(b->stats().near_log_gaps == 1);
  CHECK(b->usage().near == 0);
}

TEST_CASE("a log slot that stays missing is a gap; the counter evicted is one too",
          "[near][nostore]") {
  NearWorld w;
  auto a = w.cache(w.options());
  auto b = w.cache(w.options());
  w.db["keep"] = "1";
  b->get("keep");
  b->get("keep");
  a->invalidate("other");
  // Evict every log slot (as memcached under memory pressure could).
  detail::NearLog log(w.base.store, encode_key("near_log:near:", max_key_length - 16), 1024,
                      w.base.clock);
  for (int s = 0; s < 1024; ++s) w.base.store->remove(log.slot(s));
  b->sync_near();  // the writer may still be between its two steps: wait once
  CHECK(b->stats().near_log_gaps == 0);
  CHECK(b->usage().near == 1);
  b->sync_near();
  CHECK(b->stats().near_log_gaps == 1);
  CHECK(b->usage().near == 0);

  b->get("keep");
  b->get("keep");
  w.base.store->remove(encode_key("near_log:near:", max_key_length - 16) + "%c");
  a->invalidate("other");  // a new counter, started at the current time
  b->sync_near();
  CHECK(b->stats().near_log_gaps == 2);
}

TEST_CASE("no escaped user key is a log slot's key", "[near][nostore]") {
  // The log of a cache named "users" with no prefix, and the key text that escapes to
  // what its slot 123 was in 0.2 ("%" + decimal: decimal digits are hex digits).
  std::string base = encode_key("near_log:users:", max_key_length - 16);
  detail::NearLog log(std::make_shared<InMemoryStore>(), base, 1024,
                      std::make_shared<ManualClock>());
  std::string text =
      "near_log:users:\x12"
      "3";
  CHECK(encode_key(text) == log.legacy_slot(123));  // the 0.2 collision
  CHECK(encode_key(text) != log.slot(123));
  for (int b = 0; b < 256; ++b)
    for (const char* tail : {"", "1", "23", "s1", "c"}) {
      std::string k = encode_key("near_log:users:" + std::string(1, static_cast<char>(b)) + tail);
      CHECK(k.rfind(base + "%s", 0) != 0);
      CHECK(k != log.counter_key());
    }
}

TEST_CASE("records a 0.2 writer left in the old slot form are still applied", "[near][nostore]") {
  NearWorld w;
  auto b = w.cache(w.options());
  w.db["x"] = "old";
  w.db["y"] = "old";
  for (const char* k : {"x", "y"}) {
    b->get(k);
    b->get(k);
  }
  REQUIRE(b->usage().near == 2);
  detail::NearLog log(w.base.store, encode_key("near_log:near:", max_key_length - 16), 1024,
                      w.base.clock);
  w.db["x"] = "new";
  w.db["y"] = "new";
  for (const char* k : {"x", "y"}) {  // as 0.2 invalidated: delete, incr, the old slot
    REQUIRE(w.base.store->remove(b->cache_key(k)) == StoreStatus::ok);
    std::uint64_t seq = 0;
    REQUIRE(w.base.store->incr(log.counter_key(), 1, 0, 0, seq) == StoreStatus::ok);
    REQUIRE(w.base.store->set(log.legacy_slot(seq), std::to_string(seq) + " " + b->cache_key(k), 0,
                              0) == StoreStatus::ok);
  }
  b->sync_near();
  CHECK(b->stats().near_log_gaps == 0);
  CHECK(b->usage().near == 0);
  CHECK(b->get("x") == "new");
  CHECK(b->get("y") == "new");
}

TEST_CASE("a read that raced an invalidation does not leave the old value near",
          "[near][nostore]") {
  NearWorld w;
  auto c = w.cache(w.options());
  w.db["k"] = "old";
  c->get("k");
  Gate gate;
  std::atomic<bool> pause{true};
  w.store->after = [&](const char* op, std::string_view key, StoreStatus) {
    if (std::string(op) == "get" && key == "k" && pause.exchange(false))
      gate.arrive();  // the old value is read; now the write happens
  };
  std::thread reader([&] { CHECK(c->get("k") == "old"); });
  REQUIRE(gate.wait_arrival());
  w.db["k"] = "new";
  CHECK(c->invalidate("k"));
  gate.open();
  reader.join();
  CHECK(c->get("k") == "new");
  CHECK(c->get("k") == "new");
}

TEST_CASE("the near cache stays within its capacity, and a scan keeps hot keys",
          "[near][nostore]") {
  NearWorld w;
  Options o = w.options();
  o.near_capacity = 1000;
  auto c = w.cache(o);
  for (int i = 0; i < 100; ++i) w.db["hot" + std::to_string(i)] = "h";
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 100; ++i) c->get("hot" + std::to_string(i));
  for (int i = 0; i < 20000; ++i) {
    std::string k = "scan" + std::to_string(i);
    c->get(k);
    c->get(k);  // a memcached hit: offered to the near cache
  }
  CHECK(c->usage().near <= 1000);
  CHECK(c->stats().near_evictions >= 19000);
  w.store->reset_counts();
  for (int i = 0; i < 100; ++i) c->get("hot" + std::to_string(i));
  CHECK(w.store->round_trips() == 0);  // all still near
}

TEST_CASE("pending invalidations hold out near entries too", "[near][nostore]") {
  NearWorld w;
  Options o = w.options();
  o.invalidation_retry = std::chrono::seconds(60);
  auto c = w.cache(o);
  w.db["k"] = "1";
  c->get("k");
  c->get("k");
  w.store->fail = true;
  w.db["k"] = "2";
  CHECK_FALSE(c->invalidate("k"));
  w.store->fail = false;
  CHECK(c->get("k") == "2");
  CHECK(c->retry_pending() == 0);
  CHECK(c->get("k") == "2");
}

TEST_CASE("a pending invalidation, once applied, reaches the other processes' near caches",
          "[near][nostore]") {
  NearWorld w;
  Options o = w.options();
  o.invalidation_retry = std::chrono::seconds(60);  // retried by hand
  auto a = w.cache(o);
  auto b = w.cache(o);
  w.db["k"] = "1";
  b->get("k");
  b->get("k");
  REQUIRE(b->usage().near == 1);
  w.store->fail = true;  // a's partition
  w.db["k"] = "2";
  CHECK_FALSE(a->put("k", "2"));
  w.store->fail = false;
  b->sync_near();
  CHECK(b->get("k") == "1");  // nothing reached memcached yet
  CHECK(a->retry_pending() == 0);
  b->sync_near();
  INFO("b near " << b->usage().near << " gaps " << b->stats().near_log_gaps << " reads "
                 << b->stats().near_log_reads << " hits " << b->stats().near_hits);
  CHECK(b->get("k") == "2");
}

TEST_CASE("near options are checked", "[near][nostore]") {
  NearWorld w;
  Options o = w.options();
  o.format = Format::raw;
  CHECK_THROWS_AS(w.cache(o), Error);
  o = w.options();
  o.near_sync = std::chrono::milliseconds(0);
  CHECK_THROWS_AS(w.cache(o), Error);
}

// Real memcached, real time.

TEST_CASE("memcached killed: near entries stop being served after near_sync", "[near]") {
  Server srv;
  Options o;
  o.near_ttl = std::chrono::seconds(60);
  o.near_sync = std::chrono::milliseconds(100);
  StringCache c(
      srv.store, [](const std::string&) -> std::optional<std::string> { return "v"; }, o);
  c.get("k");
  c.get("k");
  REQUIRE(c.usage().near == 1);
  srv.process.stop();
  auto killed = std::chrono::steady_clock::now();
  long long last_near_ms = -1;
  while (ms_since(killed) < 400) {
    auto before = c.stats().near_hits;
    auto at = ms_since(killed);
    CHECK(c.get("k") == "v");
    if (c.stats().near_hits > before) last_near_ms = at;
  }
  INFO("last near hit " << last_near_ms << " ms after the kill");
  CHECK(last_near_ms >= 0);
  CHECK(last_near_ms < 100);
}

TEST_CASE("two processes: a write in one is seen by the other's near cache within near_sync",
          "[near][processes]") {
  Server srv;
  char path[] = "/tmp/cacheaside_near_versionXXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, sizeof(std::uint64_t)) == 0);
  auto* version = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  REQUIRE(version != MAP_FAILED);
  Options o = coherence_options();
  TestCache<int, std::string, StringSerializer> writer(
      srv.store,
      [&](const int&) -> std::optional<std::string> { return std::to_string(version->load()); }, o);
  const char* env = std::getenv("CACHEASIDE_NEAR_TRIALS");
  int trials = env ? std::max(1, std::atoi(env)) : 20;
  std::vector<long long> stale_after;  // last old read's start - the write's return, ms
  for (int t = 0; t < trials; ++t) {
    int key = t % 5;
    Child other(
        {CACHEASIDE_TEST_WORKER, "near-observe", srv.process.config(), path, std::to_string(key)});
    REQUIRE(other.line().rfind("ready ", 0) == 0);
    // Spreads the writes over the other's sync period: the bound holds at any phase.
    std::this_thread::sleep_for(std::chrono::milliseconds(t * 7 % 60));
    version->fetch_add(1);
    if (t % 2 == 0) {
      REQUIRE(writer.invalidate(key));
    } else {
      REQUIRE(writer.put(key, std::to_string(version->load())));
    }
    long long returned = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
    long long last_old = std::stoll(other.line());
    REQUIRE(last_old >= 0);
    stale_after.push_back(last_old - returned);
  }
  ::munmap(version, sizeof(std::uint64_t));
  ::close(fd);
  ::unlink(path);
  std::sort(stale_after.begin(), stale_after.end());
  std::printf(
      "near coherence: %d trials; the other process's last read of the old value began %lld ms "
      "(median), %lld ms (max) after the write returned; bound 100 ms\n",
      trials, stale_after[stale_after.size() / 2], stale_after.back());
  CHECK(stale_after.back() < 100);
}
