// AsyncCacheAside against raw libmemcached, in the same run, on the same item:
//
//   cacheaside_async_bench [--ops=N] [--runs=N] [--inflight=N] [--placement=same|split]
//
// 1. a hit, one caller at a time on one io thread, vs a blocking memcached_get:
//    median latency of each, and the ratio;
// 2. hits with --inflight callers at once on one io thread (one memcached
//    connection, requests coalesced) vs memcached_get back to back on one thread:
//    throughput of each, and the ratio;
// 3. a cold miss (the loader answers at once, the value is stored under the lease)
//    vs a naive memcached_get + memcached_set: median latency, and the ratio;
// 4. 64 hot keys read by --inflight callers at once on one thread, vs the blocking
//    CacheAside over MetaStore with that many threads, and vs raw libmemcached with
//    that many threads, each with its own memcached_st: throughput, and the ratios;
// 5. hits with --inflight requests at once vs a plain pipelined client: meta `mg`
//    requests written back to back on one connection, --inflight at a time, replies
//    read in order, no cache logic: throughput, and the ratio;
// 6. a near-cache hit, one call after another (the async one: a callback, then the io
//    thread runs it), vs the blocking CacheAside's near hit: ns and heap allocations a
//    call, and the ratio.
// memcached runs with -t 1.
// Each figure is the median of --runs runs. A private memcached is started on a free
// loopback port; "same" pins it and the benchmark to one CPU (the shortest round
// trip, where the library's own cost weighs most), "split" to two.
#include <arpa/inet.h>
#include <libmemcached-1.0/memcached.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/cache_aside.hpp>
#include <cacheaside/json.hpp>
#include <cacheaside/meta.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"
#include "memcached_process.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct User {
  int id = 0;
  std::string name;
  std::string email;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(User, id, name, email)
using Users = cacheaside::AsyncCacheAside<int, User, cacheaside::JsonSerializer<User>>;
using BlockingUsers = cacheaside::CacheAside<int, User, cacheaside::JsonSerializer<User>>;
constexpr int hot_keys = 64;

User row(int id) {
  return {id, "Ada Lovelace of the Analytical Engine",
          "ada.lovelace@analytical-engine.example.com"};
}

bool pin(pid_t pid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(pid, sizeof(set), &set) == 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Runs io until flag is set.
void run_until(asio::io_context& io, const bool& flag) {
  io.restart();
  while (!flag && io.run_one()) {
  }
  if (!flag) throw std::runtime_error("io_context ran out of work");
}

struct Bench {
  asio::io_context io;
  std::shared_ptr<cacheaside::AsyncMetaStore> store;
  std::unique_ptr<Users> users;
  std::unique_ptr<BlockingUsers> blocking;
  std::unique_ptr<Users> near_users;  // with a near cache
  std::unique_ptr<BlockingUsers> near_blocking;
  std::string config;
  memcached_st* raw = nullptr;
  int next_cold = 1000000;

  explicit Bench(const std::string& config) {
    store = std::make_shared<cacheaside::AsyncMetaStore>(io.get_executor(), config);
    cacheaside::Options o;
    o.key_prefix = "abench_";
    o.ttl = std::chrono::hours(1);
    users = std::make_unique<Users>(
        store, [](const int& id, cacheaside::LoadHandler<User> h) { h(nullptr, row(id)); }, o);
    blocking = std::make_unique<BlockingUsers>(
        std::make_shared<cacheaside::MetaStore>(config + " --POOL-MAX=128"),
        [](const int& id) { return std::optional<User>(row(id)); }, o);  // same keys
    cacheaside::Options n = o;
    n.key_prefix = "abench_near_";
    n.near_ttl = std::chrono::hours(1);
    near_users = std::make_unique<Users>(
        store, [](const int& id, cacheaside::LoadHandler<User> h) { h(nullptr, row(id)); }, n);
    near_blocking = std::make_unique<BlockingUsers>(
        std::make_shared<cacheaside::MetaStore>(config),
        [](const int& id) { return std::optional<User>(row(id)); }, n);
    this->config = config;
    raw = connect();
    std::string v = nlohmann::json(row(42)).dump();
    for (int k = 0; k < hot_keys; ++k) {
      get(k == 0 ? 42 : k);  // stored; from now on a hit
      std::string key = "raw_" + std::to_string(k == 0 ? 42 : k);
      memcached_set(raw, key.data(), key.size(), v.data(), v.size(), 0, 0);
    }
  }

  memcached_st* connect() const {
    memcached_st* m = memcached(config.data(), config.size());
    if (!m) throw std::runtime_error("memcached() failed");
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    return m;
  }

  static int hot(int i) { return i % hot_keys == 0 ? 42 : i % hot_keys; }
  ~Bench() { memcached_free(raw); }

  bool get(int id) { return get_from(*users, id); }

  struct PerCall {
    double ns, allocs;
    double median_ns = 0;  // chained() only
  };
  // n calls of op one after another: mean ns and heap allocations a call.
  template <class Op>
  static PerCall per_call(int n, Op op) {
    auto a0 = cacheaside_bench::allocation_count();
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i)
      if (!op()) throw std::runtime_error("unexpected answer");
    double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
    return {ns, static_cast<double>(cacheaside_bench::allocation_count() - a0) / n};
  }
  PerCall async_near(int n) {
    bool done = false, ok = false;
    auto handler = [&](std::exception_ptr e, std::optional<User> u) {
      ok = !e && u && u->id == 42;
      done = true;
    };
    near_users->async_get(42, handler);  // loaded, then a near entry
    run_until(io, done);
    return per_call(n, [&] {
      done = ok = false;
      near_users->async_get(42, handler);
      run_until(io, done);
      return ok;
    });
  }
  // n calls of cache.async_get(id) as a service makes them: each from the previous one's
  // completion handler, on the io thread (inside run(), where Asio recycles its handler
  // memory): mean and median ns, and heap allocations a call.
  PerCall chained(Users& cache, int id, int n) {
    int left = n, wrong = 0;
    bool done = false;
    std::vector<double> ns;
    ns.reserve(n);
    Clock::time_point t;
    std::function<void()> next = [&] {
      t = Clock::now();
      cache.async_get(id, [&](std::exception_ptr e, std::optional<User> u) {
        ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t).count());
        if (e || !u || u->id != id) ++wrong;
        if (--left == 0) {
          done = true;
        } else {
          next();
        }
      });
    };
    get_from(cache, id);  // loaded (a near entry too, with a near cache)
    auto a0 = cacheaside_bench::allocation_count();
    auto t0 = Clock::now();
    asio::post(io, next);
    run_until(io, done);
    double mean = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
    if (wrong) throw std::runtime_error("unexpected answer");
    return {mean, static_cast<double>(cacheaside_bench::allocation_count() - a0) / n,
            median(std::move(ns))};
  }
  bool get_from(Users& cache, int id) {
    bool done = false, ok = false;
    cache.async_get(id, [&](std::exception_ptr e, std::optional<User> u) {
      ok = !e && u && u->id == id;
      done = true;
    });
    run_until(io, done);
    return ok;
  }

  PerCall try_near(int n) {
    std::optional<User> u;
    if (!near_users->try_get_near(42, u)) throw std::runtime_error("no near entry");
    return per_call(n, [&] { return near_users->try_get_near(42, u) && u && u->id == 42; });
  }

  // A plain client: `inflight` meta gets of the hit's item written at once on one
  // blocking socket, then their replies read in order; hits per second.
  double pipelined_throughput(int n, int inflight, int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect failed");
    std::string batch;
    for (int i = 0; i < inflight; ++i) batch += "mg abench_42 v\r\n";
    std::string buf;
    char chunk[65536];
    int hits = 0;
    auto t0 = Clock::now();
    for (int sent = 0; sent < n; sent += inflight) {
      if (::send(fd, batch.data(), batch.size(), 0) != static_cast<ssize_t>(batch.size()))
        throw std::runtime_error("send failed");
      for (int got = 0; got < inflight;) {
        std::size_t eol = buf.find("\r\n");
        if (eol != std::string::npos && buf.compare(0, 3, "VA ") == 0) {
          std::size_t len = std::stoul(buf.substr(3, eol - 3));
          if (buf.size() >= eol + 2 + len + 2) {
            buf.erase(0, eol + 2 + len + 2);
            ++got;
            ++hits;
            continue;
          }
        } else if (eol != std::string::npos) {
          throw std::runtime_error("unexpected reply: " + buf.substr(0, eol));
        }
        ssize_t r = ::recv(fd, chunk, sizeof chunk, 0);
        if (r <= 0) throw std::runtime_error("recv failed");
        buf.append(chunk, static_cast<std::size_t>(r));
      }
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    ::close(fd);
    return hits / secs;
  }

  // Asio's own part of such a call: an empty handler posted, then run by the same
  // run_until() on the same io_context (its sockets registered, so each run_one polls).
  PerCall asio_post(int n) {
    bool done = false;
    return per_call(n, [&] {
      done = false;
      asio::post(io, [&] { done = true; });
      run_until(io, done);
      return true;
    });
  }
  PerCall blocking_near(int n) {
    near_blocking->get(42);
    return per_call(n, [&] {
      auto u = near_blocking->get(42);
      return u && u->id == 42;
    });
  }

  bool raw_get() {
    std::size_t len = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc;
    char* v = memcached_get(raw, "raw_42", 6, &len, &flags, &rc);
    bool ok = v && rc == MEMCACHED_SUCCESS;
    std::free(v);
    return ok;
  }

  bool raw_cold() {
    std::string key = "raw_cold_" + std::to_string(next_cold++);
    std::size_t len = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc;
    char* v = memcached_get(raw, key.data(), key.size(), &len, &flags, &rc);
    std::free(v);
    if (rc != MEMCACHED_NOTFOUND) return false;
    std::string s = nlohmann::json(row(1)).dump();  // what the loader returns, serialized
    return memcached_set(raw, key.data(), key.size(), s.data(), s.size(), 3600, 0) ==
           MEMCACHED_SUCCESS;
  }

  // Median latency of n calls of op, in µs.
  template <class Op>
  double latency(int n, Op op) {
    std::vector<double> us;
    us.reserve(n);
    for (int i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      if (!op()) throw std::runtime_error("unexpected answer");
      us.push_back(micros(Clock::now() - t0));
    }
    return median(std::move(us));
  }

  // Hits per second with `inflight` callers at once on this thread, over the hot keys.
  double async_throughput(int n, int inflight) {
    int started = 0, finished = 0, wrong = 0;
    bool done = false;
    std::function<void()> one = [&] {
      int id = hot(started++);
      users->async_get(id, [&](std::exception_ptr e, std::optional<User> u) {
        if (e || !u) ++wrong;
        if (++finished == n) done = true;
        if (started < n) one();
      });
    };
    auto t0 = Clock::now();
    for (int i = 0; i < inflight && started < n; ++i) one();
    run_until(io, done);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (wrong) throw std::runtime_error("unexpected answer");
    return n / s;
  }

  double raw_throughput(int n) {
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i)
      if (!raw_get()) throw std::runtime_error("unexpected answer");
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // Hits per second from `threads` threads, each calling op(thread, i) n / threads times.
  template <class Op>
  static double threaded(int n, int threads, Op op) {
    std::atomic<int> wrong{0};
    std::vector<std::thread> ts;
    auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (int i = 0; i < n / threads; ++i)
          if (!op(t, i)) ++wrong;
      });
    for (auto& t : ts) t.join();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (wrong) throw std::runtime_error("unexpected answer");
    return (n / threads) * threads / s;
  }

  double blocking_throughput(int n, int threads) {
    return threaded(n, threads, [&](int t, int i) {
      int id = hot(t * 7 + i);
      auto u = blocking->get(id);
      return u && u->id == id;
    });
  }

  double raw_threads_throughput(int n, int threads) {
    std::vector<memcached_st*> conns;
    for (int t = 0; t < threads; ++t) conns.push_back(connect());
    double r = threaded(n, threads, [&](int t, int i) {
      std::string key = "raw_" + std::to_string(hot(t * 7 + i));
      std::size_t len = 0;
      std::uint32_t flags = 0;
      memcached_return_t rc;
      char* v = memcached_get(conns[t], key.data(), key.size(), &len, &flags, &rc);
      bool ok = v && rc == MEMCACHED_SUCCESS;
      std::free(v);
      return ok;
    });
    for (auto* c : conns) memcached_free(c);
    return r;
  }
};

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  std::string p = "--" + name + "=";
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind(p, 0) == 0) return argv[i] + p.size();
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  int ops = std::stoi(arg(argc, argv, "ops", "20000"));
  int runs = std::stoi(arg(argc, argv, "runs", "3"));
  int inflight = std::stoi(arg(argc, argv, "inflight", "64"));
  std::string placement = arg(argc, argv, "placement", "same");
  if (!pin(0, 0)) throw std::runtime_error("sched_setaffinity failed");
  cacheaside_test::MemcachedProcess server({"-t", "1"});
  if (placement == "split" && !pin(server.pid(), 1))
    throw std::runtime_error("sched_setaffinity failed");
  Bench b(server.config());

  std::vector<double> hit, raw_hit, tput, raw_tput, cold, raw_cold, block_tput, raw_mt_tput;
  std::vector<double> near_ns, near_allocs, bnear_ns, bnear_allocs, post_ns, pipe_tput;
  std::vector<double> hit_allocs, bhit_allocs, chit_ns, chit_allocs, cnear_ns, cnear_allocs;
  std::vector<double> tnear_ns, tnear_allocs;
  for (int r = 0; r < runs; ++r) {
    hit.push_back(b.latency(ops, [&] { return b.get(42); }));
    raw_hit.push_back(b.latency(ops, [&] { return b.raw_get(); }));
    tput.push_back(b.async_throughput(ops * 5, inflight));
    raw_tput.push_back(b.raw_throughput(ops));
    cold.push_back(b.latency(ops / 4, [&] { return b.get(b.next_cold++); }));
    raw_cold.push_back(b.latency(ops / 4, [&] { return b.raw_cold(); }));
    block_tput.push_back(b.blocking_throughput(ops * 5, inflight));
    raw_mt_tput.push_back(b.raw_threads_throughput(ops * 5, inflight));
    pipe_tput.push_back(b.pipelined_throughput(ops * 5, inflight, server.port()));
    auto an = b.async_near(ops * 10);
    auto bn = b.blocking_near(ops * 10);
    near_ns.push_back(an.ns);
    near_allocs.push_back(an.allocs);
    bnear_ns.push_back(bn.ns);
    bnear_allocs.push_back(bn.allocs);
    post_ns.push_back(b.asio_post(ops * 10).ns);
    hit_allocs.push_back(b.per_call(ops / 4, [&] { return b.get(42); }).allocs);
    auto ch = b.chained(*b.users, 42, ops);
    chit_ns.push_back(ch.median_ns);
    chit_allocs.push_back(ch.allocs);
    auto cn = b.chained(*b.near_users, 42, ops * 10);
    cnear_ns.push_back(cn.ns);
    cnear_allocs.push_back(cn.allocs);
    auto tn = b.try_near(ops * 10);
    tnear_ns.push_back(tn.ns);
    tnear_allocs.push_back(tn.allocs);
    bhit_allocs.push_back(b.per_call(ops / 4, [&] {
                             auto u = b.blocking->get(42);
                             return u && u->id == 42;
                           }).allocs);
  }
  double h = median(hit), rh = median(raw_hit), t = median(tput), rt = median(raw_tput),
         c = median(cold), rc = median(raw_cold), bt = median(block_tput),
         rmt = median(raw_mt_tput);
  std::printf("placement: %s; %d ops a case, median of %d runs\n\n", placement.c_str(), ops, runs);
  std::printf("| case | AsyncCacheAside | raw libmemcached | ratio |\n|---|---:|---:|---:|\n");
  std::printf("| hit, one caller at a time: median µs | %.1f | %.1f | %.3f× |\n", h, rh, h / rh);
  std::printf(
      "| hits, %d callers in flight on one thread vs raw back to back: per second | "
      "%.0f | %.0f | %.2f× |\n",
      inflight, t, rt, t / rt);
  std::printf(
      "| cold miss (load + lease-guarded store) vs get + set: median µs | %.1f | %.1f | "
      "%.3f× |\n",
      c, rc, c / rc);
  std::printf(
      "| %d hot keys, %d callers in flight on one thread vs blocking CacheAside "
      "(MetaStore), %d threads: per second | %.0f | %.0f | %.2f× |\n",
      hot_keys, inflight, inflight, t, bt, t / bt);
  std::printf(
      "| %d hot keys, %d callers in flight on one thread vs raw, %d threads each with "
      "its memcached_st: per second | %.0f | %.0f | %.2f× |\n",
      hot_keys, inflight, inflight, t, rmt, t / rmt);
  double pt = median(pipe_tput);
  std::printf(
      "| hits, %d in flight on one thread vs a plain client writing %d `mg` at a time on "
      "one connection, replies read in order: per second | %.0f | %.0f | %.2f× |\n",
      inflight, inflight, t, pt, t / pt);
  double ch = median(chit_ns) / 1000;
  std::printf(
      "| hit, each call from the previous one's handler on the io thread (as a service "
      "calls): median µs | %.1f | %.1f | %.3f× |\n",
      ch, rh, ch / rh);
  std::printf(
      "\nheap allocations a memcached hit: AsyncCacheAside %.2f (%.2f called from a handler "
      "on the io thread), CacheAside (MetaStore) %.2f\n",
      median(hit_allocs), median(chit_allocs), median(bhit_allocs));
  double nn = median(near_ns), bnn = median(bnear_ns);
  std::printf(
      "\n| near-cache hit, one call after another | AsyncCacheAside | CacheAside | ratio |\n"
      "|---|---:|---:|---:|\n");
  std::printf("| ns a call | %.0f | %.0f | %.2f× |\n", nn, bnn, nn / bnn);
  std::printf("| heap allocations a call | %.2f | %.2f | |\n", median(near_allocs),
              median(bnear_allocs));
  double cnn = median(cnear_ns);
  std::printf(
      "| ns a call, each from the previous one's handler on the io thread | %.0f | %.0f | %.2f× "
      "|\n",
      cnn, bnn, cnn / bnn);
  std::printf("| heap allocations a call, so | %.2f | %.2f | |\n", median(cnear_allocs),
              median(bnear_allocs));
  double tnn = median(tnear_ns);
  std::printf("| `try_get_near` (no completion): ns a call | %.0f | %.0f | %.2f× |\n", tnn, bnn,
              tnn / bnn);
  std::printf("| heap allocations a call, so | %.2f | %.2f | |\n", median(tnear_allocs),
              median(bnear_allocs));
  std::printf(
      "| of which Asio's post + run_one of an empty handler, ns (the floor of a completion) "
      "| %.0f | | |\n",
      median(post_ns));
  auto st = b.store->stats();
  std::printf("\nAsyncMetaStore: %llu requests in %llu writes\n",
              static_cast<unsigned long long>(st.requests),
              static_cast<unsigned long long>(st.writes));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "cacheaside_async_bench: %s\n", e.what());
  return 1;
}
