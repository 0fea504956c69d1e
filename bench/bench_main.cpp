// cacheaside benchmarks: the cost of a cache hit through CacheAside against raw
// libmemcached doing the same round trip on the same item.
//
//   cacheaside_bench [--memcached=<libmemcached config>] [--placement=same|split|none]
//                    [--cpu=N] [--summary=<file>] [--csv=<file>] [Google Benchmark flags]
//
// Without --memcached a private memcached is started on a free loopback port and
// killed at exit. Every operation is timed on its own; after the run a Markdown
// table of median latencies, ratios (cacheaside / raw) and heap allocations per
// operation is printed (and written to --summary=<file> if given); --csv=<file>
// writes every benchmark's figures, one row each, for scripts/bench.sh's charts.
//
// Placement: a loopback round trip costs ~15 us when client and server share a CPU
// and ~45 us when the server must be woken on another one (in a VM, more). Left to
// the scheduler, a run flips between the two and medians mean nothing, so by
// default (same) the benchmark and its memcached are pinned to one CPU: the
// shortest round trip, where the library's own cost weighs most. split pins them to
// two different CPUs; none leaves placement to the scheduler.
#include <benchmark/benchmark.h>
#include <libmemcached-1.0/memcached.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/json.hpp>
#include <cacheaside/libmemcached.hpp>
#include <cacheaside/meta.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"
#include "memcached_process.hpp"

namespace bench {

struct User {
  int id = 0;
  std::string name;
  std::string email;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(User, id, name, email)

using Clock = std::chrono::steady_clock;
using StringCache = cacheaside::CacheAside<std::string, std::string, cacheaside::StringSerializer>;
using UserCache = cacheaside::CacheAside<int, User, cacheaside::JsonSerializer<User>>;
using ListCache = cacheaside::CacheAside<std::string, std::vector<User>,
                                         cacheaside::JsonSerializer<std::vector<User>>>;

constexpr int many_count = 100;
constexpr int user_id = 42;

// ---- per-operation samples -------------------------------------------------------

/// Latency of every timed operation of one benchmark (all its runs), and its
/// allocations.
struct Samples {
  std::vector<std::uint32_t> ns;
  std::uint64_t ops = 0;
  std::uint64_t allocs = 0;
  bool failed = false;
};

std::map<std::string, Samples>& all_samples() {
  static std::map<std::string, Samples> samples;
  return samples;
}

// Bounds memory: 16 MiB of samples per benchmark at most.
constexpr std::size_t max_samples = std::size_t{4} << 20;

/// Runs `op` once per iteration, timing each call by itself and counting the heap
/// allocations it makes. `op` returns false when the answer was not the expected hit.
template <class Op>
void measure(benchmark::State& state, const std::string& id, Op&& op) {
  Samples& s = all_samples()[id];
  // Room for every iteration up front, so the loop itself allocates nothing.
  std::size_t left = max_samples - std::min(max_samples, s.ns.size());
  s.ns.reserve(s.ns.size() + std::min<std::size_t>(left, state.max_iterations));
  std::uint64_t allocs = 0;
  std::uint64_t ops = 0;
  for (auto _ : state) {
    std::uint64_t a0 = cacheaside_bench::allocation_count();
    auto t0 = Clock::now();
    bool ok = op();
    auto t1 = Clock::now();
    allocs += cacheaside_bench::allocation_count() - a0;
    ++ops;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
    if (s.ns.size() < s.ns.capacity())
      s.ns.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(ns, UINT32_MAX)));
    if (!ok) {
      s.failed = true;
      state.SkipWithError("unexpected answer (not the expected cache hit)");
      break;
    }
  }
  s.ops += ops;
  s.allocs += allocs;
  state.counters["allocs/op"] = benchmark::Counter(ops ? double(allocs) / double(ops) : 0.0);
}

/// Fails the benchmark unless every call of the run was a hit in the library's own
/// counters too (no miss, no load).
void expect_hits(benchmark::State& state, const std::string& id, const cacheaside::Stats& before,
                 const cacheaside::Stats& after, std::uint64_t hits_per_op) {
  std::uint64_t want = static_cast<std::uint64_t>(state.iterations()) * hits_per_op;
  if (after.hits - before.hits != want || after.misses != before.misses ||
      after.loads != before.loads || after.cache_errors != before.cache_errors) {
    all_samples()[id].failed = true;
    state.SkipWithError("not every lookup was a cache hit");
  }
}

// ---- the world: server, store, caches, raw connection ---------------------------

struct World {
  std::unique_ptr<cacheaside_test::MemcachedProcess> server;  // when we started one
  std::string config;
  std::string placement;
  std::shared_ptr<cacheaside::MemcachedStore> store;
  std::shared_ptr<cacheaside::MetaStore> meta;  // the meta protocol, same server
  memcached_st* raw = nullptr;

  std::map<std::string, std::string> string_rows;  // the "database"
  std::map<int, User> user_rows;
  std::unique_ptr<StringCache> strings;
  std::unique_ptr<StringCache> grouped;         // Options::group: generation read per hit
  std::unique_ptr<StringCache> grouped_cached;  // ... with group_cache
  std::unique_ptr<UserCache> users;             // default envelope format
  std::unique_ptr<UserCache> users_raw;         // Format::raw: plain JSON in memcached
  std::unique_ptr<StringCache> near_strings;    // near cache on
  std::unique_ptr<StringCache> signed_strings;  // Options::signing_keys
  std::unique_ptr<ListCache> near_lists;        // a list of 100 users, near cache on
  std::unique_ptr<StringCache> meta_strings;    // over MetaStore (same keys as strings)
  std::unique_ptr<StringCache> cold_classic;    // cold keys, leases on, MemcachedStore
  std::unique_ptr<StringCache> cold_meta;       // cold keys, leases on, MetaStore
  std::string cold_value = std::string(200, 'c');
  std::uint64_t cold_next = 0;  // cold keys are never reused
  std::vector<User> list_rows;
  std::string mkey_list_raw;  // the list as plain JSON, for the baseline

  std::string key_100 = "v100", key_1k = "v1k";
  std::string mkey_100, mkey_1k, mkey_user, mkey_user_raw;
  std::size_t stored_100 = 0, stored_1k = 0, stored_user = 0, stored_user_raw = 0;
  std::vector<std::string> many_keys, many_mkeys;
  std::vector<const char*> many_ptrs;
  std::vector<std::size_t> many_lens;

  ~World() {
    meta_strings.reset();
    cold_classic.reset();
    cold_meta.reset();
    near_strings.reset();
    signed_strings.reset();
    near_lists.reset();
    strings.reset();
    users.reset();
    users_raw.reset();
    if (raw) memcached_free(raw);
  }
};

std::string filler(std::size_t n, char seed) {
  std::string s(n, 'x');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (seed + i * 7) % 26);
  return s;
}

// The bytes memcached holds for mkey (via the raw connection); throws if absent.
std::string stored_bytes(memcached_st* mc, const std::string& mkey) {
  std::size_t len = 0;
  std::uint32_t flags = 0;
  memcached_return_t rc;
  char* v = memcached_get(mc, mkey.data(), mkey.size(), &len, &flags, &rc);
  if (!v) throw std::runtime_error("setup: '" + mkey + "' is not in memcached");
  std::string out(v, len);
  std::free(v);
  return out;
}

enum class Placement { same, split, none };

/// Extra arguments for the memcached the benchmark starts (--server-args="-R 200").
std::vector<std::string>& server_args() {
  static std::vector<std::string> args;
  return args;
}

bool pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

/// CPUs of the machine that this process may be moved to (at start).
std::vector<int>& allowed_all_cpus() {
  static std::vector<int> cpus;
  return cpus;
}

/// CPUs this process may run on.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

/// Starts the private memcached placed as asked (it inherits the affinity it is
/// forked with); returns a description of the placement.
std::string start_server(World& w, Placement placement, int cpu) {
  std::vector<int> cpus = allowed_cpus();
  if (placement == Placement::none || cpus.empty()) {
    w.server = std::make_unique<cacheaside_test::MemcachedProcess>(server_args());
    return "not pinned";
  }
  if (cpu < 0 || std::find(cpus.begin(), cpus.end(), cpu) == cpus.end()) {
    int now = sched_getcpu();
    cpu = std::find(cpus.begin(), cpus.end(), now) != cpus.end() ? now : cpus.front();
  }
  if (placement == Placement::split && cpus.size() > 1) {
    int other = cpu == cpus.front() ? cpus[1] : cpus.front();
    if (!pin_self(other)) throw std::runtime_error("sched_setaffinity failed");
    w.server = std::make_unique<cacheaside_test::MemcachedProcess>(server_args());
    if (!pin_self(cpu)) throw std::runtime_error("sched_setaffinity failed");
    return "benchmark on CPU " + std::to_string(cpu) + ", memcached on CPU " +
           std::to_string(other);
  }
  if (!pin_self(cpu)) throw std::runtime_error("sched_setaffinity failed");
  w.server = std::make_unique<cacheaside_test::MemcachedProcess>(server_args());
  return "benchmark and memcached on CPU " + std::to_string(cpu);
}

void setup(World& w, const std::string& config_arg, Placement placement, int cpu) {
  if (config_arg.empty()) {
    w.placement = start_server(w, placement, cpu);
    w.config = w.server->config();
  } else {
    w.config = config_arg;
    w.placement = "external server, not pinned";
  }
  w.store = std::make_shared<cacheaside::MemcachedStore>(w.config);
  w.meta = std::make_shared<cacheaside::MetaStore>(w.config);

  // The baseline connection gets exactly the store's configuration (its defaults
  // included: TCP_NODELAY, timeouts) and CAS like the store, so the two send the same
  // command and read the same reply.
  const std::string& cfg = w.store->config();
  w.raw = memcached(cfg.data(), cfg.size());
  if (!w.raw) throw std::runtime_error("memcached(\"" + cfg + "\") failed");
  memcached_behavior_set(w.raw, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);

  w.string_rows[w.key_100] = filler(100, 1);
  w.string_rows[w.key_1k] = filler(1024, 2);
  for (int i = 0; i < many_count; ++i) {
    std::string k = "m" + std::to_string(i);
    w.string_rows[k] = filler(100, static_cast<char>(i));
    w.many_keys.push_back(k);
  }
  // ~100 bytes of JSON, like a row of the example service.
  w.user_rows[user_id] = User{user_id, "Ada Lovelace of the Analytical Engine",
                              "ada.lovelace@analytical-engine.example.com"};

  // Long TTLs: nothing may expire (or be refreshed early) during the run.
  cacheaside::Options so;
  so.name = "strings";
  so.key_prefix = "cabench_s_";
  so.ttl = std::chrono::hours(1);
  w.strings = std::make_unique<StringCache>(
      w.store,
      [&w](const std::string& k) -> std::optional<std::string> {
        auto it = w.string_rows.find(k);
        if (it == w.string_rows.end()) return std::nullopt;
        return it->second;
      },
      so);
  auto load_string = [&w](const std::string& k) -> std::optional<std::string> {
    auto it = w.string_rows.find(k);
    if (it == w.string_rows.end()) return std::nullopt;
    return it->second;
  };
  cacheaside::Options go = so;
  go.key_prefix = "cabench_g_";
  go.group = "cabench_group";
  w.grouped = std::make_unique<StringCache>(w.store, load_string, go);
  go.group_cache = std::chrono::hours(1);
  w.grouped_cached = std::make_unique<StringCache>(w.store, load_string, go);
  auto load_user = [&w](const int& id) -> std::optional<User> {
    auto it = w.user_rows.find(id);
    if (it == w.user_rows.end()) return std::nullopt;
    return it->second;
  };
  cacheaside::Options uo;
  uo.name = "user";
  uo.key_prefix = "cabench_user_";
  uo.ttl = std::chrono::hours(1);
  w.users = std::make_unique<UserCache>(w.store, load_user, uo);
  cacheaside::Options ro = uo;
  ro.key_prefix = "cabench_rawuser_";
  ro.format = cacheaside::Format::raw;
  w.users_raw = std::make_unique<UserCache>(w.store, load_user, ro);

  // The same string cache over MetaStore (it reads what `strings` stores), and
  // caches for cold keys: an instant loader, 200-byte values, leases on.
  w.meta_strings = std::make_unique<StringCache>(w.meta, load_string, so);
  cacheaside::Options co = so;
  co.name = "cold";
  co.key_prefix = "cabench_cold_";
  auto load_cold = [&w](const std::string&) -> std::optional<std::string> { return w.cold_value; };
  StringCache::BulkLoader bulk_cold = [&w](const std::vector<std::string>& ks) {
    return std::vector<std::optional<std::string>>(ks.size(), w.cold_value);
  };
  w.cold_classic = std::make_unique<StringCache>(w.store, load_cold, bulk_cold, co);
  w.cold_meta = std::make_unique<StringCache>(w.meta, load_cold, bulk_cold, co);

  // Near caches: a hit is served in-process once memcached has answered it once.
  cacheaside::Options no = so;
  no.name = "near";
  no.near_ttl = std::chrono::hours(1);
  w.near_strings = std::make_unique<StringCache>(w.store, load_string, no);
  cacheaside::Options sg = so;
  sg.name = "signed";
  sg.key_prefix = "cabench_sig_";
  sg.signing_keys = {{"bench", std::string(32, 'k')}};
  w.signed_strings = std::make_unique<StringCache>(w.store, load_string, sg);
  for (int i = 1; i <= many_count; ++i)
    w.list_rows.push_back(
        User{i, "user" + std::to_string(i), "user" + std::to_string(i) + "@example.com"});
  cacheaside::Options lo = so;
  lo.name = "users";
  lo.key_prefix = "cabench_list_";
  lo.near_ttl = std::chrono::hours(1);
  w.near_lists = std::make_unique<ListCache>(
      w.store, [&w](const std::string&) -> std::optional<std::vector<User>> { return w.list_rows; },
      lo);
  w.mkey_list_raw = "cabench_list_raw";
  std::string list_json = nlohmann::json(w.list_rows).dump();
  memcached_set(w.raw, w.mkey_list_raw.data(), w.mkey_list_raw.size(), list_json.data(),
                list_json.size(), 0, 0);

  // Fill the cache through the library (a fresh value replaces whatever a previous
  // run left), then check what memcached holds.
  bool written = true;
  for (auto& kv : w.string_rows) written = w.strings->put(kv.first, kv.second) && written;
  written = w.grouped->put(w.key_100, w.string_rows[w.key_100]) && written;
  written = w.signed_strings->put(w.key_1k, w.string_rows[w.key_1k]) && written;
  written = w.users->put(user_id, w.user_rows[user_id]) && written;
  written = w.users_raw->put(user_id, w.user_rows[user_id]) && written;
  written = w.near_lists->put("all", w.list_rows) && written;
  if (!written) throw std::runtime_error("setup: cannot write to memcached (" + w.config + ")");
  for (int i = 0; i < 2; ++i) {  // memcached hit, then near
    w.near_strings->get(w.key_100);
    w.near_lists->get("all");
  }
  if (w.near_strings->usage().near != 1 || w.near_lists->usage().near != 1)
    throw std::runtime_error("setup: the near caches did not keep the values");

  w.mkey_100 = w.strings->cache_key(w.key_100);
  w.mkey_1k = w.strings->cache_key(w.key_1k);
  w.mkey_user = w.users->cache_key(user_id);
  w.mkey_user_raw = w.users_raw->cache_key(user_id);
  for (auto& k : w.many_keys) w.many_mkeys.push_back(w.strings->cache_key(k));
  for (auto& k : w.many_mkeys) {
    w.many_ptrs.push_back(k.data());
    w.many_lens.push_back(k.size());
  }
  w.stored_100 = stored_bytes(w.raw, w.mkey_100).size();
  w.stored_1k = stored_bytes(w.raw, w.mkey_1k).size();
  w.stored_user = stored_bytes(w.raw, w.mkey_user).size();
  std::string plain = stored_bytes(w.raw, w.mkey_user_raw);
  w.stored_user_raw = plain.size();
  if (plain != nlohmann::json(w.user_rows[user_id]).dump())
    throw std::runtime_error("setup: the raw-format entry is not the plain JSON");
  for (auto& k : w.many_mkeys) stored_bytes(w.raw, k);
  // Every lookup below must be a hit: check once here too.
  if (w.strings->get(w.key_100) != w.string_rows[w.key_100] ||
      w.strings->get(w.key_1k) != w.string_rows[w.key_1k] || !w.users->get(user_id) ||
      !w.users_raw->get(user_id) || w.strings->stats().loads != 0 || w.users->stats().loads != 0 ||
      w.users_raw->stats().loads != 0)
    throw std::runtime_error("setup: the filled entries are not read back as hits");
}

// ---- operations ------------------------------------------------------------------

bool raw_get(memcached_st* mc, const std::string& mkey, std::size_t expect_len) {
  std::size_t len = 0;
  std::uint32_t flags = 0;
  memcached_return_t rc;
  char* v = memcached_get(mc, mkey.data(), mkey.size(), &len, &flags, &rc);
  bool ok = v && rc == MEMCACHED_SUCCESS && len == expect_len;
  benchmark::DoNotOptimize(v);
  std::free(v);
  return ok;
}

bool raw_get_json(memcached_st* mc, const std::string& mkey) {
  std::size_t len = 0;
  std::uint32_t flags = 0;
  memcached_return_t rc;
  char* v = memcached_get(mc, mkey.data(), mkey.size(), &len, &flags, &rc);
  if (!v) return false;
  User u = nlohmann::json::parse(v, v + len).get<User>();
  std::free(v);
  benchmark::DoNotOptimize(u);
  return u.id == user_id;
}

bool raw_get_list(memcached_st* mc, const std::string& mkey) {
  std::size_t len = 0;
  std::uint32_t flags = 0;
  memcached_return_t rc;
  char* v = memcached_get(mc, mkey.data(), mkey.size(), &len, &flags, &rc);
  if (!v) return false;
  std::vector<User> users = nlohmann::json::parse(v, v + len).get<std::vector<User>>();
  std::free(v);
  benchmark::DoNotOptimize(users);
  return users.size() == many_count;
}

bool raw_mget(World& w) {
  memcached_return_t rc =
      memcached_mget(w.raw, w.many_ptrs.data(), w.many_lens.data(), w.many_ptrs.size());
  if (rc != MEMCACHED_SUCCESS) return false;
  std::vector<std::string> values;
  values.reserve(w.many_ptrs.size());
  memcached_result_st result;
  memcached_result_create(w.raw, &result);
  while (memcached_result_st* r = memcached_fetch_result(w.raw, &result, &rc))
    values.emplace_back(memcached_result_value(r), memcached_result_length(r));
  memcached_result_free(&result);
  benchmark::DoNotOptimize(values);
  return values.size() == w.many_ptrs.size();
}

bool raw_sequential_gets(World& w) {
  std::vector<std::string> values;
  values.reserve(w.many_mkeys.size());
  for (auto& k : w.many_mkeys) {
    std::size_t len = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc;
    char* v = memcached_get(w.raw, k.data(), k.size(), &len, &flags, &rc);
    if (!v) return false;
    values.emplace_back(v, len);
    std::free(v);
  }
  benchmark::DoNotOptimize(values);
  return true;
}

// The lesson's miss, by hand: get (a miss), then set the loaded value with a TTL.
bool naive_get_set(World& w, const std::string& mkey) {
  std::size_t len = 0;
  std::uint32_t flags = 0;
  memcached_return_t rc;
  char* v = memcached_get(w.raw, mkey.data(), mkey.size(), &len, &flags, &rc);
  if (v) {
    std::free(v);
    return false;  // not cold
  }
  return memcached_set(w.raw, mkey.data(), mkey.size(), w.cold_value.data(), w.cold_value.size(),
                       3600, 0) == MEMCACHED_SUCCESS;
}

// The same for a batch: one mget (all misses), then a set per key.
bool naive_mget_sets(World& w, const std::vector<std::string>& mkeys) {
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (auto& k : mkeys) {
    ptrs.push_back(k.data());
    lens.push_back(k.size());
  }
  memcached_return_t rc = memcached_mget(w.raw, ptrs.data(), lens.data(), ptrs.size());
  if (rc != MEMCACHED_SUCCESS) return false;
  memcached_result_st result;
  memcached_result_create(w.raw, &result);
  std::size_t found = 0;
  while (memcached_fetch_result(w.raw, &result, &rc)) ++found;
  memcached_result_free(&result);
  if (found) return false;
  for (auto& k : mkeys)
    if (memcached_set(w.raw, k.data(), k.size(), w.cold_value.data(), w.cold_value.size(), 3600,
                      0) != MEMCACHED_SUCCESS)
      return false;
  return true;
}

std::string cold_key(World& w, const char* tag) {
  return std::string(tag) + std::to_string(w.cold_next++);
}

std::vector<std::string> cold_keys(World& w, const char* tag) {
  std::vector<std::string> ks;
  ks.reserve(many_count);
  for (int i = 0; i < many_count; ++i) ks.push_back(cold_key(w, tag));
  return ks;
}

void register_all(World& w) {
  // fn(state, id): id names the benchmark's samples.
  auto reg = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(
        name, [fn, id = std::string(name)](benchmark::State& state) { fn(state, id); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  };
  auto string_get = [&w](const std::string* key, std::size_t size, StringCache* cache = nullptr) {
    return [&w, key, size, cache](benchmark::State& state, const std::string& id) {
      StringCache& c = cache ? *cache : *w.strings;
      auto before = c.stats();
      measure(state, id, [&] {
        std::optional<std::string> v = c.get(*key);
        bool ok = v && v->size() == size;
        benchmark::DoNotOptimize(v);
        return ok;
      });
      expect_hits(state, id, before, c.stats(), 1);
    };
  };
  reg("get/string_100B/cacheaside", string_get(&w.key_100, 100));
  reg("get/string_100B/raw", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] { return raw_get(w.raw, w.mkey_100, w.stored_100); });
  });
  auto grouped_get = [&w](StringCache* cache) {
    return [&w, cache](benchmark::State& state, const std::string& id) {
      auto before = cache->stats();
      measure(state, id, [&] {
        std::optional<std::string> v = cache->get(w.key_100);
        bool ok = v && v->size() == 100;
        benchmark::DoNotOptimize(v);
        return ok;
      });
      expect_hits(state, id, before, cache->stats(), 1);
    };
  };
  reg("get/string_100B/cacheaside_group", grouped_get(w.grouped.get()));
  reg("get/string_100B/cacheaside_group_cached", grouped_get(w.grouped_cached.get()));
  reg("get/string_100B/cacheaside_near", [&w](benchmark::State& state, const std::string& id) {
    auto before = w.near_strings->stats();
    measure(state, id, [&] {
      std::optional<std::string> v = w.near_strings->get(w.key_100);
      bool ok = v && v->size() == 100;
      benchmark::DoNotOptimize(v);
      return ok;
    });
    expect_hits(state, id, before, w.near_strings->stats(), 1);
  });
  reg("get/user_list_100/cacheaside_near", [&w](benchmark::State& state, const std::string& id) {
    auto before = w.near_lists->stats();
    measure(state, id, [&] {
      std::optional<std::vector<User>> v = w.near_lists->get("all");
      bool ok = v && v->size() == many_count;
      benchmark::DoNotOptimize(v);
      return ok;
    });
    expect_hits(state, id, before, w.near_lists->stats(), 1);
  });
  reg("get/user_list_100/raw_get_parse", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] { return raw_get_list(w.raw, w.mkey_list_raw); });
  });
  reg("get/string_1KB/cacheaside", string_get(&w.key_1k, 1024));
  reg("get/string_1KB/cacheaside_signed", string_get(&w.key_1k, 1024, w.signed_strings.get()));
  reg("get/string_1KB/raw", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] { return raw_get(w.raw, w.mkey_1k, w.stored_1k); });
  });
  auto user_get = [&w](UserCache* cache) {
    return [&w, cache](benchmark::State& state, const std::string& id) {
      auto before = cache->stats();
      measure(state, id, [&] {
        std::optional<User> u = cache->get(user_id);
        bool ok = u && u->id == user_id;
        benchmark::DoNotOptimize(u);
        return ok;
      });
      expect_hits(state, id, before, cache->stats(), 1);
    };
  };
  reg("get/json_user/cacheaside", user_get(w.users.get()));
  reg("get/json_user/cacheaside_rawformat", user_get(w.users_raw.get()));
  reg("get/json_user/raw_get_parse", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] { return raw_get_json(w.raw, w.mkey_user_raw); });
  });
  reg("get_many_100/cacheaside", [&w](benchmark::State& state, const std::string& id) {
    auto before = w.strings->stats();
    measure(state, id, [&] {
      std::vector<std::optional<std::string>> v = w.strings->get_many(w.many_keys);
      bool ok = v.size() == w.many_keys.size() &&
                std::all_of(v.begin(), v.end(), [](auto& x) { return x.has_value(); });
      benchmark::DoNotOptimize(v);
      return ok;
    });
    expect_hits(state, id, before, w.strings->stats(), w.many_keys.size());
  });
  reg("get_many_100/raw_mget", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] { return raw_mget(w); });
  });
  reg("get_many_100/raw_100_gets", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] { return raw_sequential_gets(w); });
  });

  // MetaStore: hits, and misses with leases (a fresh key every time).
  reg("get/string_100B/meta", [&w](benchmark::State& state, const std::string& id) {
    auto before = w.meta_strings->stats();
    measure(state, id, [&] {
      std::optional<std::string> v = w.meta_strings->get(w.key_100);
      bool ok = v && v->size() == 100;
      benchmark::DoNotOptimize(v);
      return ok;
    });
    expect_hits(state, id, before, w.meta_strings->stats(), 1);
  });
  reg("get_many_100/meta", [&w](benchmark::State& state, const std::string& id) {
    auto before = w.meta_strings->stats();
    measure(state, id, [&] {
      std::vector<std::optional<std::string>> v = w.meta_strings->get_many(w.many_keys);
      bool ok = v.size() == w.many_keys.size() &&
                std::all_of(v.begin(), v.end(), [](auto& x) { return x.has_value(); });
      benchmark::DoNotOptimize(v);
      return ok;
    });
    expect_hits(state, id, before, w.meta_strings->stats(), w.many_keys.size());
  });
  auto cold_get = [&w](StringCache* cache, const char* tag) {
    return [&w, cache, tag](benchmark::State& state, const std::string& id) {
      measure(state, id, [&] {
        std::optional<std::string> v = cache->get(cold_key(w, tag));
        return v && v->size() == w.cold_value.size();
      });
    };
  };
  reg("cold_get/leases/classic", cold_get(w.cold_classic.get(), "c"));
  reg("cold_get/leases/meta", cold_get(w.cold_meta.get(), "m"));
  reg("cold_get/naive_get_set", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id,
            [&] { return naive_get_set(w, "cabench_cold_n" + std::to_string(w.cold_next++)); });
  });
  auto cold_many = [&w](StringCache* cache, const char* tag) {
    return [&w, cache, tag](benchmark::State& state, const std::string& id) {
      auto before = cache->stats();
      measure(state, id, [&] {
        std::vector<std::optional<std::string>> v = cache->get_many(cold_keys(w, tag));
        return v.size() == static_cast<std::size_t>(many_count) && v.back().has_value();
      });
      if (cache->stats().hits != before.hits) state.SkipWithError("a cold key hit");
    };
  };
  reg("cold_get_many_100/leases/classic", cold_many(w.cold_classic.get(), "bc"));
  reg("cold_get_many_100/leases/meta", cold_many(w.cold_meta.get(), "bm"));
  // The server's share: the same two pipelines (100 mg N, 100 ms C) sent straight
  // through MetaStore, with no cache around them.
  reg("cold_get_many_100/meta_pipelines", [&w](benchmark::State& state, const std::string& id) {
    std::vector<cacheaside::detail::MetaOp> ops(many_count);
    std::vector<cacheaside::StoreItem> items(many_count);
    std::string bytes(216, 'c');
    measure(state, id, [&] {
      std::vector<std::string> ks = cold_keys(w, "cabench_cold_p");
      for (int i = 0; i < many_count; ++i) {
        ops[i] = cacheaside::detail::MetaOp();
        ops[i].key = ks[i];
        ops[i].item = &items[i];
        ops[i].vivify = 3;
      }
      w.meta->execute(ops.data(), ops.size());
      for (int i = 0; i < many_count; ++i) {
        std::uint64_t cas = items[i].cas;
        ops[i] = cacheaside::detail::MetaOp();
        ops[i].cmd = cacheaside::detail::MetaCmd::cas;
        ops[i].key = ks[i];
        ops[i].value = bytes;
        ops[i].exptime = 3600;
        ops[i].cas = cas;
      }
      w.meta->execute(ops.data(), ops.size());
      return ops.back().status == cacheaside::StoreStatus::ok;
    });
  });
  reg("cold_get_many_100/naive_mget_sets", [&w](benchmark::State& state, const std::string& id) {
    measure(state, id, [&] {
      std::vector<std::string> ks = cold_keys(w, "cabench_cold_bn");
      return naive_mget_sets(w, ks);
    });
  });
}

// ---- summary ---------------------------------------------------------------------

struct Figures {
  bool ok = false;
  std::size_t n = 0;
  double min_us = 0, p50_us = 0, p90_us = 0, p99_us = 0, allocs = 0;
};

Figures figures(const std::string& id) {
  Figures f;
  auto it = all_samples().find(id);
  if (it == all_samples().end() || it->second.failed || it->second.ns.empty()) return f;
  std::vector<std::uint32_t> v = it->second.ns;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<std::size_t>(q * double(v.size() - 1))] / 1e3; };
  f.ok = true;
  f.n = v.size();
  f.min_us = v.front() / 1e3;
  f.p50_us = at(0.5);
  f.p90_us = at(0.9);
  f.p99_us = at(0.99);
  f.allocs = it->second.ops ? double(it->second.allocs) / double(it->second.ops) : 0;
  return f;
}

std::string fmt_time(double us) {
  char buf[64];
  if (us >= 1000)
    std::snprintf(buf, sizeof buf, "%.2f ms", us / 1000);
  else
    std::snprintf(buf, sizeof buf, "%.1f µs", us);
  return buf;
}

std::string fmt_allocs(double a) {
  char buf[32];
  if (a == static_cast<double>(static_cast<long long>(a)))
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(a));
  else
    std::snprintf(buf, sizeof buf, "%.1f", a);
  return buf;
}

// Near hits from 1, 2 and 4 threads at once, all on one hot key or each on its
// own: throughput, and per-thread cost. (The benchmark is pinned to one CPU by
// default; these threads may use all.)
std::string near_scaling(const World& w) {
  std::vector<int> cpus = allowed_all_cpus();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  sched_setaffinity(0, sizeof set, &set);
  for (int i = 0; i < 4; ++i)
    for (int r = 0; r < 2; ++r) w.near_strings->get(w.many_keys[static_cast<std::size_t>(i)]);
  std::string out = "\n### Near hits from several threads (" + std::to_string(cpus.size()) +
                    " CPUs)\n\n| threads | keys | hits/s | ns per hit per thread | vs 1 thread |\n"
                    "|---:|---|---:|---:|---:|\n";
  // The machine's own scaling for work of the same kind (a key built, hashed, a
  // 100-byte value copied) with nothing shared: the ceiling for the rows above.
  {
    double base = 0;
    for (int threads : {1, 2, 4}) {
      constexpr int per_thread = 400000;
      std::vector<std::thread> ts;
      std::atomic<std::size_t> sink{0};
      auto t0 = Clock::now();
      for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
          std::size_t acc = 0;
          std::string value = w.string_rows.at(w.key_100);
          for (int i = 0; i < per_thread; ++i) {
            std::string k = "cabench_s_" + w.many_keys[static_cast<std::size_t>((i + t) & 7)];
            std::string v = value;
            acc += std::hash<std::string>()(k) + v.size();
          }
          sink += acc;
        });
      for (auto& t : ts) t.join();
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      double rate = threads * per_thread / secs;
      if (threads == 1) base = rate;
      char line[200];
      std::snprintf(line, sizeof line,
                    "| %d | no cache: the same work, nothing shared | %.2fM | %.0f | %.2f× |\n",
                    threads, rate / 1e6, secs * 1e9 / per_thread, rate / base);
      out += line;
    }
  }
  for (bool shared_key : {true, false}) {
    double base = 0;
    for (int threads : {1, 2, 4}) {
      constexpr int per_thread = 400000;
      std::vector<std::thread> ts;
      std::atomic<bool> bad{false};
      auto t0 = Clock::now();
      for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
          const std::string& key =
              shared_key ? w.key_100 : w.many_keys[static_cast<std::size_t>(t)];
          for (int i = 0; i < per_thread; ++i) {
            auto v = w.near_strings->get(key);
            if (!v || v->size() != 100) bad = true;
          }
        });
      for (auto& t : ts) t.join();
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      double rate = threads * per_thread / secs;
      if (threads == 1) base = rate;
      char line[200];
      std::snprintf(line, sizeof line, "| %d | %s | %.2fM | %.0f | %.2f× |%s\n", threads,
                    shared_key ? "one hot key" : "a key per thread", rate / 1e6,
                    secs * 1e9 / per_thread, rate / base, bad ? " (wrong answers!)" : "");
      out += line;
    }
  }
  return out;
}

std::string summary(const World& w) {
  struct Row {
    std::string label, ours, raw;
  };
  const std::vector<Row> rows = {
      {"`get` hit, 100 B string", "get/string_100B/cacheaside", "get/string_100B/raw"},
      {"`get` hit, 100 B string, `Options::group` (generation + value)",
       "get/string_100B/cacheaside_group", "get/string_100B/raw"},
      {"`get` hit, 100 B string, `group` + `group_cache`",
       "get/string_100B/cacheaside_group_cached", "get/string_100B/raw"},
      {"`get` near hit, 100 B string", "get/string_100B/cacheaside_near", "get/string_100B/raw"},
      {"`get` near hit, list of 100 JSON users vs get + parse", "get/user_list_100/cacheaside_near",
       "get/user_list_100/raw_get_parse"},
      {"`get` hit, 1 KB string", "get/string_1KB/cacheaside", "get/string_1KB/raw"},
      {"`get` hit, 1 KB string, signed (`signing_keys`) vs unsigned",
       "get/string_1KB/cacheaside_signed", "get/string_1KB/cacheaside"},
      {"`get` hit, JSON `User` (envelope) vs get + parse", "get/json_user/cacheaside",
       "get/json_user/raw_get_parse"},
      {"`get` hit, JSON `User` (`Format::raw`) vs get + parse",
       "get/json_user/cacheaside_rawformat", "get/json_user/raw_get_parse"},
      {"`get_many(100)` hits vs `memcached_mget`", "get_many_100/cacheaside",
       "get_many_100/raw_mget"},
      {"`get_many(100)` hits vs 100 × `memcached_get`", "get_many_100/cacheaside",
       "get_many_100/raw_100_gets"},
      {"MetaStore: `get` hit, 100 B string", "get/string_100B/meta", "get/string_100B/raw"},
      {"MetaStore: `get_many(100)` hits vs `memcached_mget`", "get_many_100/meta",
       "get_many_100/raw_mget"},
      {"MemcachedStore: cold `get`, leases vs naive get + set", "cold_get/leases/classic",
       "cold_get/naive_get_set"},
      {"MetaStore: cold `get`, leases vs naive get + set", "cold_get/leases/meta",
       "cold_get/naive_get_set"},
      {"MemcachedStore: cold `get_many(100)`, leases vs naive mget + 100 sets",
       "cold_get_many_100/leases/classic", "cold_get_many_100/naive_mget_sets"},
      {"MetaStore: cold `get_many(100)`, leases vs naive mget + 100 sets",
       "cold_get_many_100/leases/meta", "cold_get_many_100/naive_mget_sets"},
      {"MetaStore: cold `get_many(100)`, leases vs its two pipelines alone",
       "cold_get_many_100/leases/meta", "cold_get_many_100/meta_pipelines"},
      {"cold `get_many(100)`, leases: MetaStore vs MemcachedStore", "cold_get_many_100/leases/meta",
       "cold_get_many_100/leases/classic"},
  };
  std::string out;
  char line[512];
  out += "\n## cacheaside vs raw libmemcached (median latency per operation)\n\n";
  out += "| case | cacheaside | raw | ratio | allocs/op (cacheaside / raw) |\n";
  out += "|---|---:|---:|---:|---:|\n";
  for (auto& r : rows) {
    Figures a = figures(r.ours), b = figures(r.raw);
    if (!a.ok || !b.ok) {
      std::snprintf(line, sizeof line, "| %s | %s | %s | n/a | n/a |\n", r.label.c_str(),
                    a.ok ? fmt_time(a.p50_us).c_str() : "not run",
                    b.ok ? fmt_time(b.p50_us).c_str() : "not run");
    } else {
      std::snprintf(line, sizeof line, "| %s | %s | %s | %.3f× | %s / %s |\n", r.label.c_str(),
                    fmt_time(a.p50_us).c_str(), fmt_time(b.p50_us).c_str(), a.p50_us / b.p50_us,
                    fmt_allocs(a.allocs).c_str(), fmt_allocs(b.allocs).c_str());
    }
    out += line;
  }
  std::snprintf(line, sizeof line,
                "\nStored sizes: string %zu B and %zu B (16 B envelope header + value), "
                "JSON User %zu B (envelope) and %zu B (plain JSON, read by the baseline).\n",
                w.stored_100, w.stored_1k, w.stored_user, w.stored_user_raw);
  out += line;
  out += "Placement: " + w.placement + ".\n";
  if (!server_args().empty()) {
    out += "memcached started with:";
    for (auto& arg : server_args()) out += " " + arg;
    out += ".\n";
  }
  out +=
      "Targets: hit <= 1.05x raw, get_many(100) <= 1.3x raw mget, near hit <= 0.02x raw; "
      "MetaStore: hit <= 1.02x, get_many(100) hits <= 1.1x mget, cold get <= 1.1x naive, "
      "cold get_many(100) <= 0.07x naive and >= 30x faster than MemcachedStore.\n";
  out += near_scaling(w);
  out += "\n### All benchmarks (every operation timed on its own)\n\n";
  out += "| benchmark | samples | min | p50 | p90 | allocs/op |\n";
  out += "|---|---:|---:|---:|---:|---:|\n";
  for (auto& kv : all_samples()) {
    Figures f = figures(kv.first);
    if (!f.ok) {
      std::snprintf(line, sizeof line, "| %s | failed | | | | |\n", kv.first.c_str());
    } else {
      std::snprintf(line, sizeof line, "| %s | %zu | %s | %s | %s | %s |\n", kv.first.c_str(), f.n,
                    fmt_time(f.min_us).c_str(), fmt_time(f.p50_us).c_str(),
                    fmt_time(f.p90_us).c_str(), fmt_allocs(f.allocs).c_str());
    }
    out += line;
  }
  return out;
}

// Every benchmark, one row each: benchmark,samples,min_us,p50_us,p90_us,p99_us,allocs_per_op
// (failed ones have samples 0 and empty figures).
std::string csv() {
  std::string out = "benchmark,samples,min_us,p50_us,p90_us,p99_us,allocs_per_op\n";
  char line[512];
  for (auto& kv : all_samples()) {
    Figures f = figures(kv.first);
    if (!f.ok)
      std::snprintf(line, sizeof line, "%s,0,,,,,\n", kv.first.c_str());
    else
      std::snprintf(line, sizeof line, "%s,%zu,%.3f,%.3f,%.3f,%.3f,%.2f\n", kv.first.c_str(), f.n,
                    f.min_us, f.p50_us, f.p90_us, f.p99_us, f.allocs);
    out += line;
  }
  return out;
}

bool write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cacheaside_bench: cannot write %s\n", path.c_str());
    return false;
  }
  bool ok = std::fputs(text.c_str(), f) >= 0;
  return std::fclose(f) == 0 && ok;
}

}  // namespace bench

int main(int argc, char** argv) {
#ifdef CACHEASIDE_BENCH_MEMCACHED
  setenv("MEMCACHED_BIN", CACHEASIDE_BENCH_MEMCACHED, 0);  // unless already set
#endif
  // Our own flags out; defaults that keep a run short yet robust go first, so any
  // Google Benchmark flag given on the command line wins.
  std::string config, summary_path, csv_path;
  bench::Placement placement = bench::Placement::same;
  int cpu = -1;
  std::vector<std::string> args = {argv[0], "--benchmark_repetitions=5", "--benchmark_min_time=0.4",
                                   "--benchmark_enable_random_interleaving=true"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--memcached=", 0) == 0)
      config = a.substr(12);
    else if (a.rfind("--summary=", 0) == 0)
      summary_path = a.substr(10);
    else if (a.rfind("--csv=", 0) == 0)
      csv_path = a.substr(6);
    else if (a == "--placement=same")
      placement = bench::Placement::same;
    else if (a == "--placement=split")
      placement = bench::Placement::split;
    else if (a == "--placement=none")
      placement = bench::Placement::none;
    else if (a.rfind("--server-args=", 0) == 0) {
      std::string rest = a.substr(14), word;
      for (char ch : rest + " ") {
        if (ch == ' ') {
          if (!word.empty()) bench::server_args().push_back(word);
          word.clear();
        } else {
          word += ch;
        }
      }
    } else if (a.rfind("--cpu=", 0) == 0)
      cpu = std::atoi(a.c_str() + 6);
    else
      args.push_back(a);
  }
  std::vector<char*> bargv;
  for (auto& a : args) bargv.push_back(a.data());
  bargv.push_back(nullptr);
  int bargc = static_cast<int>(args.size());
  benchmark::Initialize(&bargc, bargv.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, bargv.data())) return 1;

  bench::allowed_all_cpus() = bench::allowed_cpus();
  bench::World world;
  try {
    bench::setup(world, config, placement, cpu);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "cacheaside_bench: %s\n", ex.what());
    return 1;
  }
  std::string extra;
  for (auto& arg : bench::server_args()) extra += " " + arg;
  std::printf("memcached: %s (libmemcached %s); %s%s\n", world.store->config().c_str(),
              LIBMEMCACHED_VERSION_STRING, world.placement.c_str(),
              extra.empty() ? "" : ("; server started with" + extra).c_str());
  std::fflush(stdout);
  bench::register_all(world);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  std::string table = bench::summary(world);
  std::fputs(table.c_str(), stdout);
  std::fflush(stdout);
  if (!summary_path.empty() && !bench::write_file(summary_path, table)) return 1;
  if (!csv_path.empty() && !bench::write_file(csv_path, bench::csv())) return 1;
  return 0;
}
