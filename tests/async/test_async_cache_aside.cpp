// AsyncCacheAside over a real memcached the test starts: the loop, single-flight
// and leases, stale-set prevention, cancellation, timeouts, loader errors, a
// dead server, and interop with the blocking CacheAside. Interleavings are made
// by async loaders that hold their handlers until the test answers them.
#include <atomic>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/cache_aside.hpp>
#include <cacheaside/json.hpp>
#include <cacheaside/meta.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/async_helpers.hpp"
#include "support/common.hpp"
#include "support/memcached_process.hpp"
#include "support/raw_client.hpp"
#include "support/user.hpp"

using namespace cacheaside;
using namespace std::chrono_literals;
using cacheaside_test::make_user;
using cacheaside_test::User;
namespace asio = boost::asio;
using Users = cacheaside_test::AsyncUsers;
using cacheaside_test::Got;
using cacheaside_test::HeldLoader;
using cacheaside_test::quick;
using cacheaside_test::run_while_not;

namespace {

// A loader that answers at once, counting its calls.
struct CountingLoader {
  std::atomic<int> calls{0};
  Users::Loader loader() {
    return [this](const int& id, LoadHandler<User> h) {
      ++calls;
      h(nullptr, id < 0 ? Got() : Got(make_user(id)));
    };
  }
};

// One caller's outcome.
struct Result {
  bool done = false;
  std::exception_ptr error;
  Got value;
  auto handler() {
    return [this](std::exception_ptr e, Got v) {
      done = true;
      error = std::move(e);
      value = std::move(v);
    };
  }
};

std::string what(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  }
}

// async_invalidate(id), io run until it completes: whether it was applied.
bool invalidate(Users& users, asio::io_context& io, int id) {
  bool done = false, ok = false;
  users.async_invalidate(id, [&](std::exception_ptr e, bool applied) {
    CHECK_FALSE(e);
    ok = applied;
    done = true;
  });
  run_while_not(io, [&] { return done; });
  return ok;
}

// quick() with a near cache whose log is read when told (sync_near), not by the clock.
Options near_quick() {
  Options o = quick();
  o.near_ttl = 60s;
  o.near_sync = 60s;
  return o;
}

// An async cache and a blocking one (another process's view) over one memcached,
// with the same options; each counts its loads.
struct TwoCaches {
  TwoCaches(const cacheaside_test::MemcachedProcess& mc, asio::io_context& context,
            const Options& o)
      : io(context),
        store(std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config())),
        a(store, load.loader(), o),
        b(
            std::make_shared<MetaStore>(mc.config()),
            [this](const int& id) {
              ++blocking_loads;
              return Got(make_user(id));
            },
            o) {}
  // The async cache's value for id, io run until it is there.
  Got get(int id) {
    Result r;
    a.async_get(id, r.handler());
    run_while_not(io, [&] { return r.done; });
    REQUIRE_FALSE(r.error);
    return r.value;
  }
  asio::io_context& io;
  std::shared_ptr<AsyncMetaStore> store;
  CountingLoader load;
  int blocking_loads = 0;
  Users a;
  CacheAside<int, User, JsonSerializer<User>> b;
};

}  // namespace

TEST_CASE(
    "async_get: a miss loads once and is stored, then hits; callbacks and use_future; "
    "values shared with the blocking CacheAside both ways",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  CountingLoader load;
  Users users(store, load.loader(), quick());

  Result first;
  users.async_get(7, first.handler());
  CHECK_FALSE(first.done);  // never inside the call
  run_while_not(io, [&] { return first.done; });
  REQUIRE_FALSE(first.error);
  REQUIRE(first.value == make_user(7));
  CHECK(load.calls == 1);

  Result second;
  users.async_get(7, second.handler());
  run_while_not(io, [&] { return second.done; });
  CHECK(second.value == make_user(7));
  CHECK(load.calls == 1);
  CHECK(users.stats().hits == 1);

  // Absent keys are cached as absent.
  Result none;
  users.async_get(-3, none.handler());
  run_while_not(io, [&] { return none.done; });
  CHECK_FALSE(none.value);

  // use_future, with io run by another thread.
  std::thread runner([&] {
    auto guard = asio::make_work_guard(io);
    io.restart();
    io.run_for(2s);
  });
  auto f = users.async_get(8, asio::use_future);
  CHECK(f.get() == make_user(8));
  io.stop();
  runner.join();

  // The blocking cache over MetaStore reads what the async one stored, and back.
  int blocking_loads = 0;
  CacheAside<int, User, JsonSerializer<User>> blocking(
      std::make_shared<MetaStore>(mc.config()),
      [&](const int& id) {
        ++blocking_loads;
        return Got(make_user(id));
      },
      quick());
  CHECK(blocking.get(7) == make_user(7));
  CHECK(blocking.get(9) == make_user(9));
  CHECK(blocking_loads == 1);
  Result nine;
  users.async_get(9, nine.handler());
  run_while_not(io, [&] { return nine.done; });
  CHECK(nine.value == make_user(9));
  CHECK(load.calls == 3);  // 7, -3 and 8: 9 was the blocking cache's
  CHECK(users.usage().flights == 0);
}

TEST_CASE(
    "async: 1000 callers of one cold key share one load; two caches on two stores take "
    "memcached's lease and load once between them",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store_a = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  auto store_b = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;
  Users a(store_a, load.loader(), quick());
  Users b(store_b, load.loader(), quick());

  std::vector<Result> results(1000);
  for (std::size_t i = 0; i < results.size(); ++i)
    (i % 2 ? b : a).async_get(42, results[i].handler());
  // Both caches' reads reach memcached; exactly one of them wins the lease and loads.
  run_while_not(io, [&] { return load.waiting() == 1; });
  // The other cache waits for the lease with backoff: no second load meanwhile.
  bool later = false;
  asio::steady_timer t(io, 30ms);
  t.async_wait([&](auto) { later = true; });
  run_while_not(io, [&] { return later; });
  CHECK(load.calls == 1);
  load.answer(make_user(42));
  run_while_not(io, [&] {
    for (auto& r : results)
      if (!r.done) return false;
    return true;
  });
  for (auto& r : results) {
    REQUIRE_FALSE(r.error);
    REQUIRE(r.value == make_user(42));
  }
  CHECK(load.calls == 1);
  CHECK(a.stats().coalesced + b.stats().coalesced >= 998);
  CHECK(store_a->stats().writes < 100);  // the 500 reads went out coalesced
}

TEST_CASE(
    "async: an invalidation while a load is in flight: the load's older value is not "
    "stored, and a get after the invalidation never returns it",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;
  Users users(store, load.loader(), quick());

  Result before;
  users.async_get(5, before.handler());
  run_while_not(io, [&] { return load.waiting() == 1; });
  // The row changes and the data layer invalidates while the old row is being loaded.
  bool invalidated = false, ok = false;
  users.async_invalidate(5, [&](std::exception_ptr e, bool applied) {
    REQUIRE_FALSE(e);
    ok = applied;
    invalidated = true;
  });
  run_while_not(io, [&] { return invalidated; });
  CHECK(ok);
  User old_row = make_user(5);
  old_row.name = "old";
  load.answer(old_row);  // the load that began before the invalidation ends now
  run_while_not(io, [&] { return before.done; });
  CHECK(before.value == old_row);  // its own caller may get it: it began before
  CHECK(users.stats().stale_sets_prevented == 1);

  Result after;
  users.async_get(5, after.handler());
  run_while_not(io, [&] { return load.waiting() == 1 || after.done; });
  REQUIRE_FALSE(after.done);  // it loads: nothing old was stored
  load.answer(make_user(5));
  run_while_not(io, [&] { return after.done; });
  CHECK(after.value == make_user(5));

  // The same when the invalidation comes from another process's blocking cache.
  CacheAside<int, User, JsonSerializer<User>> writer(
      std::make_shared<MetaStore>(mc.config()), [](const int& id) { return Got(make_user(id)); },
      quick());
  Result during;
  users.async_get(6, during.handler());
  run_while_not(io, [&] { return load.waiting() == 1; });
  CHECK(writer.invalidate(6));
  load.answer(old_row);
  run_while_not(io, [&] { return during.done; });
  CHECK(users.stats().stale_sets_prevented == 2);
  CHECK(writer.peek(6) == std::nullopt);  // nothing was stored for the other process either
  CHECK(users.usage().flights == 0);
}

TEST_CASE(
    "async: a cache destroyed with loads in flight: they finish, store, and tell their "
    "callers",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;
  Result r;
  {
    Users users(store, load.loader(), quick());
    users.async_get(21, r.handler());
    run_while_not(io, [&] { return load.waiting() == 1; });
  }
  load.answer(make_user(21));
  run_while_not(io, [&] { return r.done; });
  CHECK(r.value == make_user(21));
  CacheAside<int, User, JsonSerializer<User>> reader(
      std::make_shared<MetaStore>(mc.config()), [](const int&) { return Got(); }, quick());
  CHECK(reader.peek(21) == make_user(21));
}

TEST_CASE(
    "async: a cancelled caller completes at once with operation_aborted; the load goes "
    "on for the others and is stored",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;
  Users users(store, load.loader(), quick());

  asio::cancellation_signal cancel;
  Result cancelled, other;
  users.async_get(11, asio::bind_cancellation_slot(cancel.slot(), cancelled.handler()));
  users.async_get(11, other.handler());
  run_while_not(io, [&] { return load.waiting() == 1; });
  cancel.emit(asio::cancellation_type::terminal);
  run_while_not(io, [&] { return cancelled.done; });
  REQUIRE(cancelled.error);
  try {
    std::rethrow_exception(cancelled.error);
  } catch (const boost::system::system_error& e) {
    CHECK(e.code() == asio::error::operation_aborted);
  }
  CHECK_FALSE(other.done);
  load.answer(make_user(11));
  run_while_not(io, [&] { return other.done; });
  CHECK(other.value == make_user(11));
  // Stored: the next get hits without a load.
  Result again;
  users.async_get(11, again.handler());
  run_while_not(io, [&] { return again.done; });
  CHECK(again.value == make_user(11));
  CHECK(load.calls == 1);
  // A cancellation after completion changes nothing.
  cancel.emit(asio::cancellation_type::terminal);
}

TEST_CASE(
    "async: loader errors reach the caller and the callers sharing the load; hard_timeout "
    "ends a caller whose loader never answers, soft_timeout serves the stale copy",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;

  SECTION("errors") {
    Users users(store, load.loader(), quick());
    Result one, two;
    users.async_get(3, one.handler());
    users.async_get(3, two.handler());
    run_while_not(io, [&] { return load.waiting() == 1; });
    load.fail("database is down");
    run_while_not(io, [&] { return one.done && two.done; });
    REQUIRE(one.error);
    REQUIRE(two.error);
    CHECK(what(one.error) == "database is down");
    CHECK(users.stats().load_errors == 1);
    // Nothing was stored, nor left behind: the next get loads again at once.
    Result three;
    users.async_get(3, three.handler());
    run_while_not(io, [&] { return load.waiting() == 1; });
    load.answer(make_user(3));
    run_while_not(io, [&] { return three.done; });
    CHECK(three.value == make_user(3));
  }
  SECTION("hard_timeout") {
    Options o = quick();
    o.hard_timeout = 100ms;
    Users users(store, load.loader(), o);
    Result r;
    auto t0 = std::chrono::steady_clock::now();
    users.async_get(4, r.handler());
    run_while_not(io, [&] { return r.done; });
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(r.error);
    CHECK_THROWS_AS(std::rethrow_exception(r.error), TimeoutError);
    CHECK(took >= 100ms);
    CHECK(took < 1s);
    // The load still ends and is stored for the next caller.
    load.answer(make_user(4));
    Result next;
    users.async_get(4, next.handler());
    run_while_not(io, [&] { return next.done; });
    CHECK(next.value == make_user(4));
    CHECK(load.calls == 1);
  }
  SECTION("soft_timeout") {
    auto clock = std::make_shared<ManualClock>();
    Options o = quick();
    o.ttl = 1s;
    o.ttl_jitter = 0;
    o.max_stale = 60s;
    o.soft_timeout = 50ms;
    o.clock = clock;
    Users users(store, load.loader(), o);
    Result r;
    users.async_get(6, r.handler());
    run_while_not(io, [&] { return load.waiting() == 1; });
    User v1 = make_user(6);
    v1.name = "v1";
    load.answer(v1);
    run_while_not(io, [&] { return r.done; });
    clock->advance(2s);  // past its TTL, within max_stale; the reload will hang
    Result stale;
    users.async_get(6, stale.handler());
    run_while_not(io, [&] { return stale.done; });
    REQUIRE_FALSE(stale.error);
    CHECK(stale.value == v1);
    CHECK(users.stats().stale_served >= 1);
    load.answer(make_user(6));
  }
}

TEST_CASE(
    "async_get_many: hits in one round trip, the bulk loader once with exactly the "
    "missing keys, duplicates answered; async_put is read back without a load",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  CountingLoader load;
  std::vector<std::vector<int>> bulk_calls;
  Users users(
      store, load.loader(),
      [&](const std::vector<int>& ids, BulkLoadHandler<User> h) {
        bulk_calls.push_back(ids);
        std::vector<Got> vs;
        for (int id : ids) vs.push_back(id < 0 ? Got() : Got(make_user(id)));
        h(nullptr, std::move(vs));
      },
      quick());

  std::optional<std::vector<Got>> got;
  users.async_get(1, [](std::exception_ptr, Got) {});
  users.async_get_many({1, 2, 3, 2, -1}, [&](std::exception_ptr e, std::vector<Got> vs) {
    REQUIRE_FALSE(e);
    got = std::move(vs);
  });
  run_while_not(io, [&] { return got.has_value(); });
  REQUIRE(got->size() == 5);
  CHECK((*got)[0] == make_user(1));
  CHECK((*got)[1] == make_user(2));
  CHECK((*got)[2] == make_user(3));
  CHECK((*got)[3] == make_user(2));
  CHECK_FALSE((*got)[4]);
  // Key 1 was being loaded by the single get (or already stored): not in the bulk call.
  REQUIRE(bulk_calls.size() == 1);
  CHECK(bulk_calls[0] == std::vector<int>{2, 3, -1});

  User changed = make_user(2);
  changed.name = "changed";
  bool put = false;
  users.async_put(2, changed, [&](std::exception_ptr e, bool ok) {
    REQUIRE_FALSE(e);
    CHECK(ok);
    put = true;
  });
  run_while_not(io, [&] { return put; });
  got.reset();
  users.async_get_many({2, 3}, [&](std::exception_ptr, std::vector<Got> vs) { got = vs; });
  run_while_not(io, [&] { return got.has_value(); });
  CHECK((*got)[0] == changed);
  CHECK((*got)[1] == make_user(3));
  CHECK(bulk_calls.size() == 1);

  bool all = false;
  users.async_invalidate_many({2, 3}, [&](std::exception_ptr, bool ok) { all = ok; });
  run_while_not(io, [&] { return all; });
  got.reset();
  users.async_get_many({2, 3}, [&](std::exception_ptr, std::vector<Got> vs) { got = vs; });
  run_while_not(io, [&] { return got.has_value(); });
  CHECK((*got)[0] == make_user(2));
  REQUIRE(bulk_calls.size() == 2);
  CHECK(bulk_calls[1] == std::vector<int>{2, 3});
}

TEST_CASE(
    "async: a dead memcached: callers get the loader's values within the poll timeout; "
    "an invalidation is pending and holds the key out until the server is back",
    "[async]") {
  int port = 0;
  {
    cacheaside_test::MemcachedProcess gone;
    port = gone.port();
  }
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(
      io.get_executor(), "--SERVER=127.0.0.1:" + std::to_string(port) + " --POLL-TIMEOUT=100");
  CountingLoader load;
  Options o = quick();
  o.invalidation_retry = 50ms;
  Users users(store, load.loader(), o);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<Result> rs(50);
  for (std::size_t i = 0; i < rs.size(); ++i) users.async_get(static_cast<int>(i), rs[i].handler());
  run_while_not(io, [&] {
    for (auto& r : rs)
      if (!r.done) return false;
    return true;
  });
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    REQUIRE_FALSE(rs[i].error);
    CHECK(rs[i].value == make_user(static_cast<int>(i)));
  }
  CHECK(users.stats().cache_errors >= 1);

  CHECK_FALSE(invalidate(users, io, 1));
  CHECK(users.usage().pending == 1);
}

TEST_CASE(
    "async: io run by two threads, 4 caches' worth of callers getting and invalidating "
    "40 keys; every get returns the key's value and the tables drain",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  asio::thread_pool db(2);
  auto users = std::make_unique<Users>(
      store, blocking_loader(db.get_executor(), [](const int& id) { return Got(make_user(id)); }),
      quick());
  std::atomic<int> left{4000}, wrong{0};
  auto guard = asio::make_work_guard(io);
  std::thread t1([&] { io.run(); }), t2([&] { io.run(); });
  for (int i = 0; i < 4000; ++i) {
    int id = i % 40;
    if (i % 10 == 0) users->async_invalidate(id, [](std::exception_ptr, bool) {});
    users->async_get(id, [&, id](std::exception_ptr e, Got v) {
      if (e || v != make_user(id)) ++wrong;
      --left;
    });
  }
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (left > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  CHECK(left == 0);
  CHECK(wrong == 0);
  users.reset();  // with work possibly in flight: it keeps what it needs
  guard.reset();
  io.stop();
  t1.join();
  t2.join();
  db.join();
}

TEST_CASE(
    "async near cache: hits without memcached; its own writes drop at once, another "
    "process's are read from the near log (blocking and async caches both ways)",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  Options o = near_quick();
  o.name = "near_users";
  TwoCaches t(mc, io, o);

  CHECK(t.get(1) == make_user(1));  // loaded
  CHECK(t.get(1) == make_user(1));  // from memcached, then kept near
  CHECK(t.get(1) == make_user(1));
  CHECK(t.a.stats().near_hits == 1);
  CHECK(t.a.usage().near == 1);
  CHECK(t.load.calls == 1);
  CHECK(t.b.get(1) == make_user(1));  // from memcached, then kept near
  CHECK(t.b.get(1) == make_user(1));
  CHECK(t.b.stats().near_hits == 1);

  // The async cache's invalidation: its own near copy goes at once, the other
  // process's once it reads the log.
  bool done = false;
  t.a.async_invalidate(1, [&](std::exception_ptr e, bool ok) {
    CHECK_FALSE(e);
    CHECK(ok);
    done = true;
  });
  run_while_not(io, [&] { return done; });
  CHECK(t.get(1) == make_user(1));
  CHECK(t.load.calls == 2);
  t.b.sync_near();
  CHECK(t.b.get(1) == make_user(1));
  CHECK(t.b.stats().near_hits == 1);  // not served from its near copy

  // The blocking cache's invalidation, read by the async cache's log reader.
  CHECK(t.get(1) == make_user(1));  // kept near again
  CHECK(t.a.usage().near == 1);
  auto near_hits = t.a.stats().near_hits;
  CHECK(t.b.invalidate(1));
  t.a.sync_near();
  CHECK(t.get(1) == make_user(1));
  CHECK(t.a.stats().near_hits == near_hits);
  CHECK(t.load.calls == 3);
}

TEST_CASE(
    "async near hit: answered without I/O, yet completed through the handler's executor, "
    "never inside async_get; a closed cache does not answer from it",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  TwoCaches t(mc, io, near_quick());
  CHECK(t.get(1) == make_user(1));
  CHECK(t.get(1) == make_user(1));  // from memcached, then kept near
  auto requests = t.store->stats().requests;

  Result r;
  t.a.async_get(1, r.handler());
  CHECK_FALSE(r.done);  // not run inside the initiating call
  run_while_not(io, [&] { return r.done; });
  CHECK_FALSE(r.error);
  CHECK(r.value == make_user(1));
  CHECK(t.a.stats().near_hits == 1);
  CHECK(t.store->stats().requests == requests);  // nothing sent

  // From another thread, with a future: completed by the io thread.
  std::thread runner([&] {
    auto guard = asio::make_work_guard(io);
    io.restart();
    io.run_for(std::chrono::seconds(5));
  });
  auto f = t.a.async_get(1, asio::use_future);
  CHECK(f.get() == make_user(1));
  io.stop();
  runner.join();
  CHECK(t.a.stats().near_hits == 2);

  // try_get_near: the same answer at once, nothing posted, nothing sent.
  std::optional<User> near;
  CHECK(t.a.try_get_near(1, near));
  CHECK(near == make_user(1));
  CHECK(t.a.stats().near_hits == 3);
  io.restart();
  CHECK(io.poll() == 0);
  CHECK_FALSE(t.a.try_get_near(2, near));  // never read: only async_get can answer
  CHECK(t.store->stats().requests == requests);

  t.a.close();
  CHECK_FALSE(t.a.try_get_near(1, near));
  Result closed;
  t.a.async_get(1, closed.handler());
  run_while_not(io, [&] { return closed.done; });
  CHECK(closed.error);
  CHECK(t.a.stats().near_hits == 3);
}

TEST_CASE(
    "async try_get_near: a key known not to exist answers nullopt; an invalidated key and a "
    "cache without a near cache do not answer",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  TwoCaches t(mc, io, near_quick());
  std::optional<User> out = make_user(9);
  CHECK(t.get(-1) == std::nullopt);  // the loader knows no negative ids
  CHECK(t.get(-1) == std::nullopt);
  CHECK(t.a.try_get_near(-1, out));
  CHECK(out == std::nullopt);

  CHECK(t.get(1) == make_user(1));
  CHECK(t.get(1) == make_user(1));
  CHECK(t.a.try_get_near(1, out));
  bool done = false;
  t.a.async_invalidate(1, [&](std::exception_ptr, bool) { done = true; });
  CHECK_FALSE(t.a.try_get_near(1, out));  // its near copy went with the call
  run_while_not(io, [&] { return done; });
  CHECK_FALSE(t.a.try_get_near(1, out));

  asio::io_context io2;
  TwoCaches plain(mc, io2, quick());
  CHECK(plain.get(1) == make_user(1));
  CHECK(plain.get(1) == make_user(1));
  CHECK_FALSE(plain.a.try_get_near(1, out));
}

TEST_CASE(
    "async group: async_invalidate_all moves every key on, for a blocking cache of the "
    "same group too, and back; without the generation nothing is stored",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  Options o = quick();
  o.group = "async_group";
  TwoCaches t(mc, io, o);
  auto all = [&] {
    bool done = false, ok = false;
    t.a.async_invalidate_all([&](std::exception_ptr e, bool applied) {
      CHECK_FALSE(e);
      ok = applied;
      done = true;
    });
    run_while_not(io, [&] { return done; });
    return ok;
  };

  CHECK(t.get(1) == make_user(1));
  CHECK(t.get(2) == make_user(2));
  CHECK(t.get(1) == make_user(1));
  CHECK(t.load.calls == 2);
  CHECK(t.a.cache_key(1) == t.b.cache_key(1));
  CHECK(t.a.cache_key(1) != "1%g0");  // under a generation that was read
  CHECK(t.b.get(1) == make_user(1));  // the async cache's entry, same generation
  CHECK(t.blocking_loads == 0);

  CHECK(all());
  CHECK(t.a.cache_key(1) == t.b.cache_key(1));
  CHECK(t.get(1) == make_user(1));
  CHECK(t.load.calls == 3);
  CHECK(t.b.get(2) == make_user(2));
  CHECK(t.blocking_loads == 1);

  CHECK(t.b.invalidate_all());
  CHECK(t.get(1) == make_user(1));
  CHECK(t.load.calls == 4);

  // A put and an invalidation under the group's current generation.
  User changed = make_user(1);
  changed.name = "changed";
  bool put = false;
  t.a.async_put(1, changed, [&](std::exception_ptr, bool ok) { put = ok; });
  run_while_not(io, [&] { return put; });
  CHECK(t.b.get(1) == changed);
  CHECK_THROWS_AS(Users(t.store, t.load.loader(), quick()).async_invalidate_all(asio::deferred),
                  Error);

  // A store that cannot be reached: the generation is unknown, so the key is loaded,
  // nothing is stored, and a write becomes a pending group bump.
  int port = 0;
  {
    cacheaside_test::MemcachedProcess gone;
    port = gone.port();
  }
  auto dead = std::make_shared<AsyncMetaStore>(
      io.get_executor(), "--SERVER=127.0.0.1:" + std::to_string(port) + " --POLL-TIMEOUT=100");
  Users d(dead, t.load.loader(), o);
  Result r;
  d.async_get(7, r.handler());
  run_while_not(io, [&] { return r.done; });
  CHECK(r.value == make_user(7));
  CHECK(d.stats().cache_errors >= 1);
  CHECK_FALSE(invalidate(d, io, 7));
  CHECK(d.usage().pending == 1);
}

namespace {

// An Asio initiating function, as a database client has them: completes with
// (error_code, value) on ex; id 13 fails.
template <class Token>
auto async_find(asio::any_io_executor ex, int id, Token&& token) {
  return asio::async_initiate<Token, void(boost::system::error_code, Got)>(
      [ex](auto handler, int id) {
        asio::post(ex, [h = std::move(handler), id]() mutable {
          if (id == 13) return std::move(h)(make_error_code(boost::system::errc::io_error), Got());
          std::move(h)(boost::system::error_code(), Got(make_user(id)));
        });
      },
      token, id);
}

}  // namespace

TEST_CASE("initiating_loader: an Asio initiating function loads; its error code reaches the caller",
          "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  int calls = 0;
  Users users(store, initiating_loader([&](const int& id, auto&& token) {
                ++calls;
                return async_find(io.get_executor(), id, std::forward<decltype(token)>(token));
              }),
              quick());
  Result first, second, failed;
  users.async_get(5, first.handler());
  run_while_not(io, [&] { return first.done; });
  CHECK(first.value == make_user(5));
  users.async_get(5, second.handler());
  run_while_not(io, [&] { return second.done; });
  CHECK(second.value == make_user(5));
  CHECK(calls == 1);  // stored, then a hit
  users.async_get(13, failed.handler());
  run_while_not(io, [&] { return failed.done; });
  REQUIRE(failed.error);
  try {
    std::rethrow_exception(failed.error);
  } catch (const boost::system::system_error& e) {
    CHECK(e.code() == boost::system::errc::io_error);
  }
}

TEST_CASE("deferred (the default token): nothing is sent until the operation is launched",
          "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  TwoCaches t(mc, io, quick());
  auto get = t.a.async_get(5);  // deferred: an operation to launch later, or never
  auto put = t.a.async_put(5, make_user(50));
  run_while_not(io, [] { return true; });
  CHECK(t.load.calls == 0);
  CHECK(t.a.stats().misses == 0);
  Result r;
  std::move(get)(r.handler());
  run_while_not(io, [&] { return r.done; });
  CHECK(r.value == make_user(5));
  CHECK(t.load.calls == 1);
  bool stored = false;
  std::move(put)([&](std::exception_ptr e, bool ok) { stored = !e && ok; });
  run_while_not(io, [&] { return stored; });
  CHECK(t.b.get(5) == make_user(50));
  CHECK(t.blocking_loads == 0);
}

TEST_CASE(
    "async near cache: the log is read on demand, on the executor: another process's "
    "invalidation is seen within near_sync",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  Options o = quick();
  o.name = "near_on_demand";
  o.near_ttl = 60s;
  o.near_sync = 200ms;
  TwoCaches t(mc, io, o);
  for (int i = 0; i < 3; ++i) CHECK(t.get(1) == make_user(1));
  CHECK(t.a.stats().near_hits == 1);
  CHECK(t.a.stats().near_log_reads >= 1);  // started by the gets: no thread, no sync_near()

  CHECK(t.b.invalidate(1));
  auto invalidated = std::chrono::steady_clock::now();
  // Read again every 5 ms until the async cache loads: it must within near_sync.
  while (t.load.calls == 1 && std::chrono::steady_clock::now() - invalidated < 5s) {
    CHECK(t.get(1) == make_user(1));
    asio::steady_timer pause(io, 5ms);
    bool paused = false;
    pause.async_wait([&](boost::system::error_code) { paused = true; });
    run_while_not(io, [&] { return paused; });
  }
  auto seen = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - invalidated);
  std::printf("async near cache: another process's invalidation seen after %lld ms\n",
              static_cast<long long>(seen.count()));
  CHECK(t.load.calls == 2);
  CHECK(seen <= o.near_sync + 100ms * cacheaside_test::env_int("CACHEASIDE_TIMING_SCALE", 1));
}

namespace {
// The system's time; when armed with n, the n-th call of now() from then throws
// (as anything escaping a machine would, bad_alloc say).
struct FailingClock : Clock {
  mutable std::atomic<int> armed{0};
  time_point now() const override {
    if (armed.load() > 0 && armed.fetch_sub(1) == 1) throw std::runtime_error("clock failed");
    return std::chrono::steady_clock::now();
  }
  std::int64_t unix_ms() const override { return SystemClock::instance()->unix_ms(); }
  void sleep_for(std::chrono::nanoseconds d) override { std::this_thread::sleep_for(d); }
};
}  // namespace

TEST_CASE(
    "something escaping a run: its caller gets the error, then its lease is handed back "
    "(another process loads at once, without waiting for it)",
    "[async]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto clock = std::make_shared<FailingClock>();
  Options o = quick();
  o.clock = clock;
  o.lease_ttl = 60s;  // a marker left behind outlives the test: only its hand-back removes it
  HeldLoader load;
  Users users(std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config()), load.loader(), o);
  Result r;
  users.async_get(1, r.handler());
  run_while_not(io, [&] { return load.waiting() == 1; });  // leads, under its lease
  clock->armed = 2;  // the load's duration, then the machine's resume: throws
  load.answer(make_user(1));
  run_while_not(io, [&] { return r.done; });
  REQUIRE(r.error);
  CHECK(what(r.error) == "clock failed");
  // The hand-back's rounds run after the caller's completion: the lease's
  // placeholder goes.
  MetaStore raw(mc.config());
  std::string mkey = users.cache_key(1);
  bool released = cacheaside_test::eventually([&] {
    io.restart();
    io.poll();
    StoreItem item;
    return raw.get(mkey, item) == StoreStatus::not_found;
  });
  CHECK(released);
  CHECK(users.usage().flights == 0);
  // memcached has done the hand-back; its reply may still wait to be read. Until then
  // the run lives on, so read it here: an idle cache holds no work, run() returns.
  io.restart();
  io.run();
  Options other = quick();
  other.lease_wait = 5s;  // a marker left behind would be waited for
  CacheAside<int, User, JsonSerializer<User>> b(
      std::make_shared<MetaStore>(mc.config()), [](const int& id) { return Got(make_user(id)); },
      other);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(b.get(1) == make_user(1));
  CHECK(b.stats().lease_waits == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
}

TEST_CASE(
    "async signed values: the blocking cache with the same key reads them; bytes copied from "
    "another key are refused, loaded once and overwritten",
    "[async][signing]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  Options o = quick();
  o.signing_keys = {{"k1", std::string(32, 's')}};
  TwoCaches t(mc, io, o);
  CHECK(t.get(7) == make_user(7));
  CHECK(t.get(5) == make_user(5));
  CHECK(t.b.get(5) == make_user(5));  // the async cache's signed value: a hit
  CHECK(t.blocking_loads == 0);

  cacheaside_test::RawClient raw(mc.port());
  auto item7 = raw.get(t.a.cache_key(7));
  REQUIRE(item7);
  REQUIRE(raw.set(t.a.cache_key(5), item7->value, item7->flags));
  CHECK(t.get(5) == make_user(5));
  CHECK(t.load.calls == 3);
  CHECK(t.a.stats().integrity_failures == 1);
  CHECK(t.get(5) == make_user(5));  // overwritten with its own signed value
  CHECK(t.load.calls == 3);
  CHECK(t.b.get(5) == make_user(5));
  CHECK(t.blocking_loads == 0);
}
