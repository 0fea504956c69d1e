// Helper process for the cross-process tests of the async cache: the callers are
// C++20 coroutines on one io_context, run by one thread, over AsyncMetaStore.
//   async_worker checker <config> <versions_file> <keys> <tasks> <ops> <mode> <seed>
//       as tests/worker.cpp's checker (the same shared file, keys and options, so its
//       blocking processes and these share every key): random get / get_many /
//       update-then-invalidate; mode: leases | noleases; judged by support/floors.hpp;
//       prints "<ops> <loads> <reads> <stale reads> <unconfirmed> <never applied>"
//   async_worker stampede <config> <key> <coroutines> <sync_file> <processes>
//       every process's coroutines get key at once (the file holds two shared counters);
//       prints "<loader calls> <wrong values> <lease timeouts + 1 if not all settled>
//       <cache errors>"
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cacheaside/async.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "support/floors.hpp"

using namespace cacheaside;
namespace asio = boost::asio;
using Cache = AsyncCacheAside<int, std::string, StringSerializer>;
using Got = std::optional<std::string>;

namespace {

template <class T>
T* shared_words(const char* path, std::size_t n) {
  int fd = ::open(path, O_RDWR);
  if (fd < 0) return nullptr;
  void* p = ::mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<T*>(p);
}

asio::awaitable<void> pause(std::chrono::microseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// Polls cond every 0.5 ms, up to 10 s; true once it holds (on false the caller
// goes on: the counts it prints tell).
asio::awaitable<bool> eventually(std::function<bool()> cond) {
  for (int i = 0; i < 20000 && !cond(); ++i) co_await pause(std::chrono::microseconds(500));
  co_return cond();
}

int checker(char** argv) {
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), argv[2]);
  int keys = std::stoi(argv[4]);
  // As tests/worker.cpp: versions, then the highest version whose invalidation is a
  // floor for every process.
  auto* versions = shared_words<std::atomic<std::uint64_t>>(argv[3], 3 * std::size_t(keys));
  if (!versions) return 2;
  auto* invalidated = versions + keys;
  int tasks = std::stoi(argv[5]);
  int ops = std::stoi(argv[6]);
  std::string mode = argv[7];
  unsigned seed = static_cast<unsigned>(std::stoul(argv[8]));
  int loads = 0;  // one io thread: plain counters
  // The version when the load begins, then database latency (150-450 us): gives
  // writers a window to race the load.
  auto load = [&](int k) -> asio::awaitable<Got> {
    ++loads;
    std::string v = std::to_string(versions[k].load());
    co_await pause(std::chrono::microseconds(150 + (k * 37 + loads) % 300));
    co_return v;
  };
  Options o;
  o.key_prefix = "chk_";
  o.ttl = std::chrono::seconds(300);
  o.leases = mode != "noleases";
  o.lease_wait = std::chrono::milliseconds(200);
  Cache c(
      store, awaitable_loader(load),
      awaitable_bulk_loader([&](const std::vector<int>& ks) -> asio::awaitable<std::vector<Got>> {
        std::vector<Got> out;
        for (int k : ks) out.push_back(co_await load(k));
        co_return out;
      }),
      o);
  cacheaside_test::InvalidationFloors floors(keys, [&](int k, std::uint64_t v) {
    cacheaside_test::InvalidationFloors::raise(invalidated[k], v);
  });
  auto floor_of = [&](int k) { return std::max(floors.own(k), invalidated[k].load()); };
  auto settle = [&] {
    floors.settle([&] { return c.usage().pending; },
                  [&] { return c.stats().invalidations_dropped; });
  };
  int reads = 0, stale = 0, finished = 0;
  auto check = [&](const Got& v, std::uint64_t floor) {
    ++reads;
    if (!v || std::stoull(*v) < floor) ++stale;
  };
  for (int t = 0; t < tasks; ++t)
    asio::co_spawn(
        io,
        [&, t]() -> asio::awaitable<void> {
          std::mt19937 rng(seed * 1000 + static_cast<unsigned>(t));
          auto any_key = [&] { return static_cast<int>(rng() % static_cast<unsigned>(keys)); };
          for (int i = 0; i < ops; ++i) {
            int k = any_key();
            unsigned op = rng() % 10;
            if (op < 5) {
              std::uint64_t floor = floor_of(k);
              check(co_await c.async_get(k, asio::use_awaitable), floor);
            } else if (op < 7) {  // get_many of three keys (duplicates allowed)
              std::vector<int> ks = {k, any_key(), any_key()};
              std::vector<std::uint64_t> floor_at;
              for (int x : ks) floor_at.push_back(floor_of(x));
              auto vs = co_await c.async_get_many(ks, asio::use_awaitable);
              for (std::size_t j = 0; j < ks.size(); ++j) check(vs[j], floor_at[j]);
            } else {  // write the source, then invalidate
              std::uint64_t v = versions[k].fetch_add(1) + 1;
              floors.returned(k, v, co_await c.async_invalidate(k, asio::use_awaitable));
            }
            settle();
          }
          ++finished;
        },
        asio::detached);
  // Returns once every coroutine is done and every pending invalidation applied: the
  // cache holds no other work of its own.
  io.run();
  if (finished != tasks) return 3;
  settle();
  std::printf("%d %d %d %d %d %d\n", tasks * ops, loads, reads, stale, floors.unconfirmed(),
              floors.unapplied());
  return 0;
}

int stampede(char** argv) {
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), argv[2]);
  int key = std::stoi(argv[3]);
  int callers = std::stoi(argv[4]);
  // ready: processes whose cache is up; settled: processes whose every caller waits
  // on the key's load (its own, or the lease holder's elsewhere).
  auto* shared = shared_words<std::atomic<std::uint64_t>>(argv[5], 2);
  if (!shared) return 2;
  std::atomic<std::uint64_t>& ready = shared[0];
  std::atomic<std::uint64_t>& settled = shared[1];
  std::uint64_t processes = std::stoull(argv[6]);
  int loads = 0, wrong = 0;
  bool all_settled = false;
  Options o;
  o.key_prefix = "stampede_";
  // The holder's load waits for every process: no waiter gives up on a busy machine.
  o.lease_wait = std::chrono::seconds(10);
  Cache c(store, awaitable_loader([&](const int& k) -> asio::awaitable<Got> {
            ++loads;
            // Nothing is stored before every process has looked the key up and missed.
            co_await eventually([&] { return settled.load() == processes; });
            co_return "value" + std::to_string(k);
          }),
          o);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        ++ready;
        co_await eventually([&] { return ready.load() == processes; });
        for (int i = 0; i < callers; ++i)
          asio::co_spawn(
              io,
              [&]() -> asio::awaitable<void> {
                if (co_await c.async_get(key, asio::use_awaitable) != "value" + std::to_string(key))
                  ++wrong;
              },
              asio::detached);
        // The other callers follow this process's flight.
        all_settled = co_await eventually([&] {
          Stats s = c.stats();
          return s.coalesced == static_cast<std::uint64_t>(callers - 1) &&
                 s.loads + s.lease_waits > 0;
        });
        if (all_settled) ++settled;
      },
      asio::detached);
  io.run();
  Stats s = c.stats();
  std::printf("%d %d %d %d\n", loads, wrong,
              static_cast<int>(s.lease_timeouts + (settled.load() < processes)),
              static_cast<int>(s.cache_errors));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 9 && std::string(argv[1]) == "checker") return checker(argv);
  if (argc >= 7 && std::string(argv[1]) == "stampede") return stampede(argv);
  std::fprintf(stderr, "usage: see the comment at the top of worker_async.cpp\n");
  return 2;
}
