// A warm cache hit over TLS against the same hit in plaintext, in the same run:
// two memcached processes (one with -Z, certificates made here), a MetaStore
// and a cache on each, the hits measured in alternating rounds; median of the
// rounds. Run with the client and memcached on different cores ("split") and on
// one ("shared"). Also counts the handshakes 10,000 operations make.
//
//   cacheaside_tls_bench [ops per round, default 20000] [rounds, default 5]
#include <sched.h>

#include <algorithm>
#include <cacheaside/cache_aside.hpp>
#include <cacheaside/meta.hpp>
#include <cacheaside/tls.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/memcached_process.hpp"
#include "support/tls_files.hpp"

using namespace cacheaside;
using Cache = CacheAside<std::string, std::string, StringSerializer>;
using Steady = std::chrono::steady_clock;

namespace {

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// Nanoseconds per hit over `ops` hits of a 1 KiB value.
double hit_ns(Cache& cache, int ops) {
  auto start = Steady::now();
  for (int i = 0; i < ops; ++i) {
    std::optional<std::string> v = cache.get("k");
    if (!v || v->size() != 1024) {
      std::fprintf(stderr, "not a hit\n");
      std::exit(1);
    }
  }
  return std::chrono::duration<double, std::nano>(Steady::now() - start).count() / ops;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Pair {
  cacheaside_test::MemcachedProcess plain;
  cacheaside_test::MemcachedProcess tls{cacheaside_test::TlsFiles::get().server_args()};
};

void run(const char* placement, int client_cpu, int server_cpu, int ops, int rounds) {
  if (!pin(server_cpu)) {
    std::printf("%-7s skipped (cannot pin to CPU %d)\n", placement, server_cpu);
    return;
  }
  Pair servers;  // forked here: they run on server_cpu
  pin(client_cpu);
  auto loader = [](const std::string&) -> std::optional<std::string> {
    return std::string(1024, 'v');
  };
  auto plain_store = std::make_shared<MetaStore>(servers.plain.config() + " --POOL-MAX=1");
  auto tls_store = std::make_shared<MetaStore>(
      servers.tls.config() + " --POOL-MAX=1 --TLS-CA=" + cacheaside_test::TlsFiles::get().ca());
  Options o;
  o.ttl = std::chrono::seconds(3600);
  Cache plain(plain_store, loader, o), tls(tls_store, loader, o);
  hit_ns(plain, 1000);  // warm: the value cached, the connection open
  hit_ns(tls, 1000);
  std::vector<double> p, t, ratio;
  for (int r = 0; r < rounds; ++r) {
    p.push_back(hit_ns(plain, ops));
    t.push_back(hit_ns(tls, ops));
    ratio.push_back(p.back() / t.back());
  }
  std::printf("%-7s plaintext %7.2f us  TLS %7.2f us  TLS/plaintext throughput %.2fx\n", placement,
              median(p) / 1000, median(t) / 1000, median(ratio));
  ConnectionStats cs = tls_store->connection_stats();
  std::printf("%-7s handshakes for %d TLS hits: %llu (pool of 1)\n", placement, 1000 + ops * rounds,
              static_cast<unsigned long long>(cs.handshakes));
}

}  // namespace

int main(int argc, char** argv) {
  int ops = argc > 1 ? std::atoi(argv[1]) : 20000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  if (ops < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: %s [ops per round] [rounds]\n", argv[0]);
    return 2;
  }
  cpu_set_t allowed;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  std::printf("warm 1 KiB hits through CacheAside over MetaStore, median of %d rounds of %d\n",
              rounds, ops);
  if (cpus.size() > 1) run("split", cpus[0], cpus[1], ops, rounds);
  run("shared", cpus[0], cpus[0], ops, rounds);
}
