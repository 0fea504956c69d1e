// AsyncCacheAside and AsyncMetaStore as Asio objects: an idle store and cache hold
// no work, so io_context::run() returns once every call has completed.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/async_helpers.hpp"
#include "support/common.hpp"
#include "support/memcached_process.hpp"
#include "support/user.hpp"

using namespace cacheaside;
using namespace std::chrono_literals;
using cacheaside_test::Got;
using cacheaside_test::make_user;
using cacheaside_test::User;
namespace asio = boost::asio;
using Users = cacheaside_test::AsyncUsers;

namespace {

// Runs io.run() in a thread: true when it returned by itself within 10 s (else
// the io_context is stopped, and false).
bool run_returns(asio::io_context& io) {
  io.restart();
  std::promise<void> returned;
  auto done = returned.get_future();
  std::thread t([&] {
    io.run();
    returned.set_value();
  });
  bool by_itself = done.wait_for(10s) == std::future_status::ready;
  if (!by_itself) io.stop();
  t.join();
  return by_itself;
}

Users::Loader loader() {
  return [](const int& id, LoadHandler<User> h) { h(nullptr, Got(make_user(id))); };
}

}  // namespace

TEST_CASE("io_context::run() returns once every call has completed", "[async][lifecycle]") {
  cacheaside_test::MemcachedProcess mc;
  Options o = cacheaside_test::quick();
  SECTION("no near cache") {}
  SECTION("near cache") { o.near_ttl = 5s; }
  SECTION("group") { o.group = "g"; }

  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  Users users(store, loader(), o);
  // As docs/async.md shows it: calls, then run(); more calls from a handler.
  int completed = 0;
  users.async_get(42, [&](std::exception_ptr e, Got u) {
    CHECK_FALSE(e);
    CHECK(u == make_user(42));
    ++completed;
    users.async_get(42, [&](std::exception_ptr, Got hit) {
      CHECK(hit == make_user(42));
      ++completed;
    });
    users.async_get_many({1, 2, 3}, [&](std::exception_ptr, std::vector<Got> v) {
      CHECK(v.size() == 3);
      ++completed;
    });
    users.async_invalidate(42, [&](std::exception_ptr, bool applied) {
      CHECK(applied);
      ++completed;
    });
  });
  REQUIRE(run_returns(io));
  CHECK(completed == 4);

  // Idle, then used again: run() returns again.
  users.async_get(7, [&](std::exception_ptr, Got u) {
    CHECK(u == make_user(7));
    ++completed;
  });
  REQUIRE(run_returns(io));
  CHECK(completed == 5);
}

TEST_CASE("AsyncMetaStore: an idle connection the server closed is reopened, not failed",
          "[async][lifecycle]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  Users users(store, loader(), cacheaside_test::quick());
  Got first;
  users.async_get(1, [&](std::exception_ptr, Got u) { first = u; });
  REQUIRE(run_returns(io));
  REQUIRE(first == make_user(1));
  mc.stop();  // the connection, idle, is closed by the server
  mc.start();
  Got second;
  users.async_get(1, [&](std::exception_ptr, Got u) { second = u; });
  REQUIRE(run_returns(io));
  CHECK(second == make_user(1));
  CHECK(store->stats().lost == 0);  // nothing written on the dead connection
  CHECK(users.stats().cache_errors == 0);
}

namespace {

// A timer every 5 ms on io, and how late it fired at worst: what any other work on
// the io_context would have waited.
struct Ticker {
  explicit Ticker(asio::io_context& io) : timer(io) { arm(); }
  void arm() {
    due = std::chrono::steady_clock::now() + 5ms;
    timer.expires_at(due);
    timer.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped) return;
      auto late = std::chrono::steady_clock::now() - due;
      if (late > worst) worst = late;
      ++ticks;
      if (on_tick) on_tick();
      arm();
    });
  }
  void stop() {
    stopped = true;
    timer.cancel();
  }
  asio::steady_timer timer;
  std::chrono::steady_clock::time_point due;
  std::chrono::steady_clock::duration worst{};
  int ticks = 0;
  bool stopped = false;
  std::function<void()> on_tick;  // more work for io, between two ticks
};

long long ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

namespace {

// io.run() in a thread of its own, and whether it has returned.
struct Running {
  explicit Running(asio::io_context& context) : io(context) {
    io.restart();
    thread = std::thread([this] {
      io.run();
      returned.set_value();
    });
  }
  ~Running() {
    io.stop();
    thread.join();
  }
  bool has_returned(std::chrono::milliseconds within = 0ms) {
    return ended.wait_for(within) == std::future_status::ready;
  }
  asio::io_context& io;
  std::promise<void> returned;
  std::future<void> ended = returned.get_future();
  std::thread thread;
};

}  // namespace

TEST_CASE(
    "a pending invalidation is retried on the executor: run() returns once it is applied, or "
    "once close() ends its retries",
    "[async][lifecycle]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store =
      std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config() + " --POLL-TIMEOUT=100");
  Options o = cacheaside_test::quick();
  o.invalidation_retry = 50ms;
  Users users(store, loader(), o);
  Got got;
  users.async_get(1, [&](std::exception_ptr, Got u) { got = u; });
  REQUIRE(run_returns(io));
  REQUIRE(got == make_user(1));

  mc.pause();                       // the invalidation times out: pending
  std::atomic<bool> applied{true};  // written on the io thread below
  users.async_invalidate(1, [&](std::exception_ptr, bool ok) { applied = ok; });
  SECTION("memcached comes back: the retry applies it, then run() returns") {
    Running r(io);
    // Retried (and failing) on the io_context, which meanwhile has work.
    REQUIRE(cacheaside_test::eventually([&] { return users.stats().invalidation_retries >= 3; }));
    CHECK_FALSE(applied);
    CHECK_FALSE(r.has_returned());
    mc.resume();
    REQUIRE(r.has_returned(10s));
    CHECK(users.usage().pending == 0);
    CHECK(users.stats().invalidations_applied == 1);
    // Deleted in memcached: the next get loads.
    auto misses = users.stats().misses;
    users.async_get(1, [&](std::exception_ptr, Got u) { got = u; });
    REQUIRE(run_returns(io));
    CHECK(users.stats().misses == misses + 1);
  }
  SECTION("close() ends the retries after a last round: run() returns; later calls fail") {
    Running r(io);
    REQUIRE(cacheaside_test::eventually([&] { return users.stats().invalidation_retries >= 1; }));
    CHECK_FALSE(r.has_returned());
    users.close();
    REQUIRE(r.has_returned(10s));
    CHECK(users.usage().pending == 1);  // still failing: dropped with the cache (no spool)
    mc.resume();
  }
  SECTION("close() while the store is back: the last round applies it") {
    mc.resume();
    users.close();
    REQUIRE(run_returns(io));
    CHECK(users.usage().pending == 0);
  }
  // Closed (again: a no-op), a call completes with an Error.
  users.close();
  std::exception_ptr after;
  bool completed = false;
  users.async_get(2, [&](std::exception_ptr e, Got) {
    after = e;
    completed = true;
  });
  REQUIRE(run_returns(io));
  REQUIRE(completed);
  CHECK(after);
}

TEST_CASE(
    "no io thread waits for the spool's disk: 2,000 failed invalidations, a 5 ms timer on time",
    "[async][lifecycle]") {
  std::string path = "/tmp/cacheaside_" + std::to_string(::getpid()) + "_async_spool";
  ::unlink(path.c_str());
  asio::io_context io;
  // Nothing listens there: every invalidation fails and is spooled.
  auto store = std::make_shared<AsyncMetaStore>(
      io.get_executor(), "--SERVER=127.0.0.1:" + std::to_string(cacheaside_test::free_port()));
  Options o = cacheaside_test::quick();
  o.invalidation_spool = path;
  {
    Users users(store, loader(), o);
    Ticker ticker(io);
    int completed = 0, applied = 0;
    const int n = 2000;
    int issued = 0;
    const int per = 200;
    ticker.on_tick = [&] {  // 200 at a time from an io handler, one batch a tick
      for (int i = 0; i < per && issued < n; ++i, ++issued)
        users.async_invalidate(issued, [&](std::exception_ptr e, bool ok) {
          CHECK_FALSE(e);
          applied += ok;
          ++completed;
        });
    };
    cacheaside_test::run_while_not(io, [&] { return completed == n; });
    ticker.stop();
    std::printf(
        "2,000 failed invalidations, spool on disk: a 5 ms timer was at most %lld ms late "
        "(%d ticks)\n",
        ms(ticker.worst), ticker.ticks);
    CHECK(applied == 0);
    CHECK(ms(ticker.worst) <= 20 * cacheaside_test::env_int("CACHEASIDE_TIMING_SCALE", 1));
    // Each caller completed once its record was on disk.
    std::ifstream f(path);
    int lines = 0;
    for (std::string line; std::getline(f, line);) lines += line.rfind("d ", 0) == 0;
    CHECK(lines >= n);
    CHECK(users.usage().pending == static_cast<std::size_t>(n));
  }
  ::unlink(path.c_str());
}

TEST_CASE("no io thread waits for a cache's teardown: pending work, a near cache, a frozen server",
          "[async][lifecycle]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  Options o = cacheaside_test::quick();
  o.near_ttl = 5s;  // its log's reader: a thread over blocking connections
  o.near_sync = 20ms;
  auto users = std::make_unique<Users>(store, loader(), o);
  Got got;
  users->async_get(1, [&](std::exception_ptr, Got u) { got = u; });
  cacheaside_test::run_while_not(io, [&] { return got.has_value(); });

  mc.pause();  // the near log's reader now waits a poll timeout per read
  bool invalidated = false;
  users->async_invalidate(1, [&](std::exception_ptr, bool ok) {
    CHECK_FALSE(ok);  // pending: retried in the background
    invalidated = true;
  });
  cacheaside_test::run_while_not(io, [&] { return invalidated; });
  REQUIRE(users->usage().pending == 1);

  // The last owner of the cache's core is the run of this get, on the io thread.
  Ticker ticker(io);
  bool answered = false;
  users->async_get(2, [&](std::exception_ptr, Got u) {
    CHECK(u == make_user(2));
    answered = true;
  });
  asio::post(io, [&] { users.reset(); });
  cacheaside_test::run_while_not(io, [&] { return answered && ticker.ticks >= 40; });
  ticker.stop();
  std::printf(
      "a cache destroyed on the io thread with a pending invalidation and a near cache, "
      "memcached frozen: a 5 ms timer was at most %lld ms late\n",
      ms(ticker.worst));
  CHECK(ms(ticker.worst) <= 20 * cacheaside_test::env_int("CACHEASIDE_TIMING_SCALE", 1));
  mc.resume();
}

TEST_CASE("a cancelled caller leaves nothing behind: 10,000 waiters of one load, all cancelled",
          "[async][lifecycle]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  // A poll timeout no burst of 2,000 requests reaches, even under a sanitizer: a caller
  // whose lookup timed out would load (held too) instead of waiting.
  auto store =
      std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config() + " --POLL-TIMEOUT=5000");
  cacheaside_test::HeldLoader held;
  Options o = cacheaside_test::quick();
  o.lease_ttl = std::chrono::seconds(60);  // the leader's placeholder outlives a slow run
  Users users(store, held.loader(), o);
  auto in_use = [] { return static_cast<long long>(::mallinfo2().uordblks); };

  const int n = 10000;
  std::vector<asio::cancellation_signal> signals(n);
  int completed = 0, aborted = 0;
  auto get_all = [&](int first, int count) {
    for (int i = first; i < first + count; ++i)
      users.async_get(
          7, asio::bind_cancellation_slot(signals[i].slot(), [&](std::exception_ptr e, Got) {
            ++completed;
            aborted += e != nullptr;
          }));
  };
  get_all(0, 1);  // the leader: its load is held until the end
  cacheaside_test::run_while_not(io, [&] { return held.waiting() == 1; });
  long long before = in_use();
  for (int first = 1; first < n; first += 2000) {  // its followers (in steps: the
    int count = std::min(2000, n - first);         // connection's queue is bounded)
    get_all(first, count);
    cacheaside_test::run_while_not(io, [&] {  // each waits for the load, or loads
      return users.stats().coalesced + held.calls >= static_cast<std::uint64_t>(first + count);
    });
  }
  long long waiting = in_use();
  for (auto& s : signals) s.emit(asio::cancellation_type::terminal);
  cacheaside_test::run_while_not(io, [&] { return completed == n; });
  io.restart();
  io.poll();  // what the cancellations posted
  long long after = in_use();
  std::printf("10,000 waiters of one load: %lld KB while they wait, %lld KB left once cancelled\n",
              (waiting - before) / 1024, (after - before) / 1024);
  CHECK(aborted == n);
  CHECK(after - before < 1024 * 1024);

  while (held.waiting() > 0) held.answer(make_user(7));  // the load ends: nothing holds io
  REQUIRE(run_returns(io));
  CHECK(users.usage().flights == 0);
  Got hit;
  users.async_get(7, [&](std::exception_ptr, Got u) { hit = u; });
  REQUIRE(run_returns(io));
  CHECK(hit == make_user(7));
}
