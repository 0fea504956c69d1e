// Helper process for the cross-process tests: several of these share one memcached.
//   worker stampede <config> <key> <threads> <start_unix_ms> <loader_ms> [noleases]
//       prints the number of loader calls made in this process
//   worker checker <config> <versions_file> <keys> <threads> <ops> <leases 0|1> <seed>
//       random reads / updates / invalidations against versions kept in a shared file;
//       prints "<ops> <loads> <stale reads>"
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/libmemcached.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace cacheaside;
using Cache = CacheAside<int, std::string, StringSerializer>;

static int stampede(char** argv) {
  auto store = std::make_shared<MemcachedStore>(argv[2]);
  int key = std::stoi(argv[3]);
  int threads = std::stoi(argv[4]);
  long long start_ms = std::stoll(argv[5]);
  int loader_ms = std::stoi(argv[6]);
  std::atomic<int> loads{0};
  Options o;
  o.key_prefix = "stampede_";
  o.leases = argv[7] == nullptr || std::string(argv[7]) != "noleases";
  Cache c(
      store,
      [&](const int& k) -> std::optional<std::string> {
        ++loads;
        std::this_thread::sleep_for(std::chrono::milliseconds(loader_ms));
        return "value" + std::to_string(k);
      },
      o);
  while (cacheaside::SystemClock().unix_ms() < start_ms) std::this_thread::sleep_for(std::chrono::microseconds(200));
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&] {
      if (c.get(key) != "value" + std::to_string(key)) ++wrong;
    });
  for (auto& t : ts) t.join();
  std::printf("%d %d\n", loads.load(), wrong.load());
  return 0;
}

static int checker(char** argv) {
  auto store = std::make_shared<MemcachedStore>(argv[2]);
  int fd = ::open(argv[3], O_RDWR);
  if (fd < 0) return 2;
  int keys = std::stoi(argv[4]);
  // versions[k]: the source of truth; invalidated[k]: highest version whose invalidation
  // has completed. A get that starts after that must not return anything older.
  auto* versions = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, 2 * sizeof(std::uint64_t) * keys, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  auto* invalidated = versions + keys;
  int threads = std::stoi(argv[5]);
  int ops = std::stoi(argv[6]);
  bool leases = std::stoi(argv[7]) != 0;
  unsigned seed = static_cast<unsigned>(std::stoul(argv[8]));
  std::atomic<int> loads{0};
  Options o;
  o.key_prefix = "chk_";
  o.ttl = std::chrono::seconds(300);
  o.leases = leases;
  o.lease_wait = std::chrono::milliseconds(200);
  Cache c(
      store,
      [&](const int& k) -> std::optional<std::string> {
        ++loads;
        std::string v = std::to_string(versions[k].load());
        // Database latency: gives writers a window to race the load.
        std::this_thread::sleep_for(std::chrono::microseconds(200 + (k * 37) % 300));
        return v;
      },
      o);
  std::atomic<int> stale_reads{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(seed * 1000 + static_cast<unsigned>(t));
      for (int i = 0; i < ops; ++i) {
        int k = static_cast<int>(rng() % static_cast<unsigned>(keys));
        unsigned op = rng() % 10;
        if (op < 7) {
          std::uint64_t floor = invalidated[k].load();
          auto v = c.get(k);
          if (!v || std::stoull(*v) < floor) ++stale_reads;
        } else if (op < 9) {
          std::uint64_t v = versions[k].fetch_add(1) + 1;  // write the source, then invalidate
          c.invalidate(k);
          std::uint64_t cur = invalidated[k].load();
          while (cur < v && !invalidated[k].compare_exchange_weak(cur, v)) {
          }
        } else {
          c.invalidate(k);
        }
      }
    });
  for (auto& t : ts) t.join();
  std::printf("%d %d %d\n", threads * ops, loads.load(), stale_reads.load());
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 7 && std::string(argv[1]) == "stampede") return stampede(argv);
  if (argc >= 9 && std::string(argv[1]) == "checker") return checker(argv);
  std::fprintf(stderr, "usage: see the comment at the top of worker.cpp\n");
  return 2;
}
