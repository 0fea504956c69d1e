// AsyncInvalidationFanout over a real memcached: a batch's keys go out at once
// (a batch of 40 changes costs the round trips of one), each distinct key once,
// with the changes memcached did not confirm reported.
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cacheaside/async.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/async_helpers.hpp"
#include "support/fault_proxy.hpp"
#include "support/memcached_process.hpp"

using namespace cacheaside;
namespace asio = boost::asio;
using cacheaside_test::run_while_not;

namespace {

using Strings = AsyncCacheAside<long long, std::string, StringSerializer>;
using Lists = AsyncCacheAside<std::string, std::string, StringSerializer>;

struct World {
  explicit World(const std::string& config)
      : store(std::make_shared<AsyncMetaStore>(io.get_executor(), config)),
        by_id(
            store,
            [](const long long& id, LoadHandler<std::string> h) {
              h(nullptr, "user" + std::to_string(id));
            },
            options("user_")),
        lists(
            store, [](const std::string&, LoadHandler<std::string> h) { h(nullptr, "all"); },
            options("")),
        on_user(by_id, [](long long id) { return id; }) {
    on_user.add(lists, [](long long) { return std::string("users_all"); });
  }
  static Options options(const char* prefix) {
    Options o = cacheaside_test::quick();
    o.key_prefix = prefix;
    return o;
  }
  std::vector<bool> apply(std::vector<long long> ids) {
    bool done = false;
    std::vector<bool> out;
    on_user.async_apply(std::move(ids), [&](std::exception_ptr e, std::vector<bool> ok) {
      CHECK_FALSE(e);
      out = std::move(ok);
      done = true;
    });
    run_while_not(io, [&] { return done; });
    return out;
  }
  void warm(long long id) {
    bool done = false;
    by_id.async_get(id, [&](std::exception_ptr, std::optional<std::string>) { done = true; });
    run_while_not(io, [&] { return done; });
    done = false;
    lists.async_get("users_all",
                    [&](std::exception_ptr, std::optional<std::string>) { done = true; });
    run_while_not(io, [&] { return done; });
  }
  std::uint64_t invalidations() {
    return by_id.stats().invalidations + lists.stats().invalidations;
  }

  asio::io_context io;
  std::shared_ptr<AsyncMetaStore> store;
  Strings by_id;
  Lists lists;
  AsyncInvalidationFanout<long long> on_user;
};

bool cached(const cacheaside_test::MemcachedProcess& mc, const std::string& key) {
  MetaStore plain(mc.config());
  StoreItem item;
  return plain.get(key, item) == StoreStatus::ok;
}

}  // namespace

TEST_CASE("async fanout: a batch deletes each distinct key once, in every cache", "[fanout]") {
  cacheaside_test::MemcachedProcess mc;
  World w(mc.config());
  for (long long id : {5, 7}) w.warm(id);
  REQUIRE(cached(mc, "user_5"));
  REQUIRE(cached(mc, "users_all"));
  CHECK(w.apply({5, 7, 5}) == std::vector<bool>{true, true, true});
  CHECK(w.invalidations() == 3);  // user_5, user_7, users_all
  CHECK_FALSE(cached(mc, "user_5"));
  CHECK_FALSE(cached(mc, "user_7"));
  CHECK_FALSE(cached(mc, "users_all"));
  CHECK(w.apply({}).empty());

  // From a thread of its own (a relay's), with a future.
  w.warm(5);
  std::thread io_thread([&] {
    auto guard = asio::make_work_guard(w.io);
    w.io.restart();
    w.io.run_for(std::chrono::seconds(10));
  });
  auto f = w.on_user.async_apply({5}, asio::use_future);
  CHECK(f.get() == std::vector<bool>{true});
  w.io.stop();
  io_thread.join();
  CHECK_FALSE(cached(mc, "user_5"));
}

TEST_CASE("async fanout: a batch of 40 changes costs the round trips of one", "[fanout]") {
  cacheaside_test::MemcachedProcess mc;
  cacheaside_test::FaultProxy proxy(mc.port());
  World w(proxy.config());
  w.warm(1);
  proxy.delay(std::chrono::milliseconds(40));  // 80 ms a round trip
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(w.apply({1}) == std::vector<bool>{true});
  auto one = std::chrono::steady_clock::now() - t0;
  std::vector<long long> ids;
  for (long long i = 100; i < 140; ++i) ids.push_back(i);
  t0 = std::chrono::steady_clock::now();
  CHECK(w.apply(ids) == std::vector<bool>(40, true));
  auto forty = std::chrono::steady_clock::now() - t0;
  INFO("one change " << std::chrono::duration_cast<std::chrono::milliseconds>(one).count()
                     << " ms, forty "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(forty).count()
                     << " ms");
  CHECK(forty < 2 * one + std::chrono::milliseconds(100));  // one after another: 40x
}

TEST_CASE("async fanout: changes memcached did not confirm are reported and stay pending",
          "[fanout]") {
  cacheaside_test::MemcachedProcess mc;
  cacheaside_test::FaultProxy proxy(mc.port());
  World w(proxy.config());
  w.warm(5);
  proxy.drop();  // a partition
  CHECK(w.apply({5, 6}) == std::vector<bool>{false, false});
  CHECK(w.by_id.usage().pending == 2);
  CHECK(w.lists.usage().pending == 1);
  proxy.pass();
  bool done = false;
  w.by_id.async_invalidate(5, [&](std::exception_ptr, bool) { done = true; });
  run_while_not(w.io, [&] { return done; });
  run_while_not(w.io, [&] { return w.by_id.usage().pending + w.lists.usage().pending == 0; });
  CHECK(w.apply({5, 6}) == std::vector<bool>{true, true});
}
