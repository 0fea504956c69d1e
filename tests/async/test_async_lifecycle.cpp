// AsyncCacheAside and AsyncMetaStore as Asio objects: an idle store and cache hold
// no work, so io_context::run() returns once every call has completed.
#include <boost/asio/io_context.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "support/async_helpers.hpp"
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
  io.restart();
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
  io.restart();
  Got second;
  users.async_get(1, [&](std::exception_ptr, Got u) { second = u; });
  REQUIRE(run_returns(io));
  CHECK(second == make_user(1));
  CHECK(store->stats().lost == 0);  // nothing written on the dead connection
  CHECK(users.stats().cache_errors == 0);
}
