// AsyncCacheAside from C++20 coroutines (use_awaitable) over a real memcached: the
// values, a loader's exception thrown at the co_await, and a cancelled leader whose
// load still serves the caller that shared it. Interleavings are made by a loader
// that holds its handler until the test answers it, and by waiting on the cache's
// counters.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/async_helpers.hpp"
#include "support/memcached_process.hpp"
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

TEST_CASE("co_await: miss, hit, get_many, put and invalidate", "[async][awaitable]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  int loads = 0;
  Users users(
      store,
      [&loads](const int& id, LoadHandler<User> h) {
        ++loads;
        h(nullptr, id < 0 ? Got() : Got(make_user(id)));
      },
      quick());
  Got a, b, after_put, reloaded;
  std::vector<Got> many;
  bool put = false, invalidated = false, done = false;
  int loads_after_hit = 0;
  User changed = make_user(2);
  changed.name = "changed";
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        a = co_await users.async_get(1, asio::use_awaitable);
        b = co_await users.async_get(1, asio::use_awaitable);
        loads_after_hit = loads;
        // A named vector: g++ 12 cannot keep a braced list's array in a coroutine frame.
        std::vector<int> keys = {1, 2, -3};
        many = co_await users.async_get_many(keys, asio::use_awaitable);
        put = co_await users.async_put(2, changed, asio::use_awaitable);
        after_put = co_await users.async_get(2, asio::use_awaitable);
        invalidated = co_await users.async_invalidate(2, asio::use_awaitable);
        reloaded = co_await users.async_get(2, asio::use_awaitable);
        done = true;
      },
      asio::detached);
  run_while_not(io, [&] { return done; });
  CHECK(a == make_user(1));
  CHECK(b == make_user(1));
  CHECK(loads_after_hit == 1);
  REQUIRE(many.size() == 3);
  CHECK(many[0] == make_user(1));
  CHECK(many[1] == make_user(2));
  CHECK_FALSE(many[2]);
  CHECK(put);
  CHECK(after_put == changed);
  CHECK(invalidated);
  CHECK(reloaded == make_user(2));  // loaded again
  CHECK(users.stats().hits >= 2);
}

TEST_CASE("co_await: a loader's exception is thrown at every caller's co_await",
          "[async][awaitable]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;
  Users users(store, load.loader(), quick());
  std::vector<std::string> errors;
  auto caller = [&]() -> asio::awaitable<void> {
    try {
      co_await users.async_get(7, asio::use_awaitable);
      errors.push_back("no exception");
    } catch (const std::runtime_error& e) {
      errors.push_back(e.what());
    }
  };
  asio::co_spawn(io, caller(), asio::detached);
  run_while_not(io, [&] { return load.waiting() == 1; });
  asio::co_spawn(io, caller(), asio::detached);
  run_while_not(io, [&] { return users.stats().coalesced == 1; });
  load.fail("database down");
  run_while_not(io, [&] { return errors.size() == 2; });
  CHECK(errors == std::vector<std::string>{"database down", "database down"});
  CHECK(load.calls == 1);
}

TEST_CASE(
    "co_await: a cancelled leader completes at once with operation_aborted; its load goes on, "
    "serves the caller sharing it and is stored",
    "[async][awaitable]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  HeldLoader load;
  Users users(store, load.loader(), quick());

  asio::cancellation_signal cancel;
  std::optional<boost::system::error_code> leader_error;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        try {
          co_await users.async_get(
              3, asio::bind_cancellation_slot(cancel.slot(), asio::use_awaitable));
          leader_error = boost::system::error_code();
        } catch (const boost::system::system_error& e) {
          leader_error = e.code();
        }
      },
      asio::detached);
  run_while_not(io, [&] { return load.waiting() == 1; });  // the leader's load
  Got follower;
  bool follower_done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        follower = co_await users.async_get(3, asio::use_awaitable);
        follower_done = true;
      },
      asio::detached);
  run_while_not(io, [&] { return users.stats().coalesced == 1; });

  cancel.emit(asio::cancellation_type::terminal);
  run_while_not(io, [&] { return leader_error.has_value(); });
  CHECK(*leader_error == asio::error::operation_aborted);
  CHECK_FALSE(follower_done);

  load.answer(make_user(3));
  run_while_not(io, [&] { return follower_done; });
  CHECK(follower == make_user(3));
  CHECK(load.calls == 1);

  // Stored: the next caller hits.
  bool hit_done = false;
  Got hit;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        hit = co_await users.async_get(3, asio::use_awaitable);
        hit_done = true;
      },
      asio::detached);
  run_while_not(io, [&] { return hit_done; });
  CHECK(hit == make_user(3));
  CHECK(load.calls == 1);
  CHECK(users.stats().hits == 1);
}

namespace {

// A coroutine loader, as a coroutine service writes one: a timer stands for the
// database's round trip; id 13 fails.
asio::awaitable<Got> find_user(int id, int& loads) {
  ++loads;
  asio::steady_timer t(co_await asio::this_coro::executor, 2ms);
  co_await t.async_wait(asio::use_awaitable);
  if (id == 13) throw std::runtime_error("db down");
  co_return Got(make_user(id));
}

asio::awaitable<std::vector<Got>> find_users(std::vector<int> ids, int& bulk_loads) {
  ++bulk_loads;
  asio::steady_timer t(co_await asio::this_coro::executor, 2ms);
  co_await t.async_wait(asio::use_awaitable);
  std::vector<Got> out;
  for (int id : ids) out.push_back(Got(make_user(id)));
  co_return out;
}

}  // namespace

TEST_CASE("awaitable_loader: a coroutine loads once for its callers; its exception reaches them",
          "[async][awaitable]") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), mc.config());
  int loads = 0, bulk_loads = 0;
  Users users(store, awaitable_loader([&loads](const int& id) { return find_user(id, loads); }),
              awaitable_bulk_loader([&bulk_loads](const std::vector<int>& ids) {
                return find_users(ids, bulk_loads);
              }),
              quick());
  int done = 0;
  std::vector<Got> got(3);
  for (auto& g : got)
    users.async_get(4, [&](std::exception_ptr e, Got u) {
      CHECK_FALSE(e);
      g = std::move(u);
      ++done;
    });
  run_while_not(io, [&] { return done == 3; });
  for (auto& g : got) CHECK(g == make_user(4));
  CHECK(loads == 1);

  std::vector<int> ids = {1, 2, 3};
  std::vector<Got> many;
  bool many_done = false;
  users.async_get_many(ids, [&](std::exception_ptr e, std::vector<Got> v) {
    CHECK_FALSE(e);
    many = std::move(v);
    many_done = true;
  });
  run_while_not(io, [&] { return many_done; });
  CHECK(many == std::vector<Got>{make_user(1), make_user(2), make_user(3)});
  CHECK(bulk_loads == 1);

  std::exception_ptr error;
  bool failed = false;
  users.async_get(13, [&](std::exception_ptr e, Got) {
    error = std::move(e);
    failed = true;
  });
  run_while_not(io, [&] { return failed; });
  REQUIRE(error);
  CHECK_THROWS_WITH(std::rethrow_exception(error), "db down");
}
