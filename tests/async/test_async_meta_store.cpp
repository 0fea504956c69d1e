// AsyncMetaStore over a real memcached the test starts: replies, sharing one
// connection, the bound, a frozen, dead, restarted or impostor server.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/meta.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_server.hpp"
#include "support/memcached_process.hpp"

using namespace cacheaside;
using namespace std::chrono_literals;
using detail::MetaCmd;
using detail::MetaOp;
namespace asio = boost::asio;
using Steady = std::chrono::steady_clock;

namespace {

MetaOp get_op(std::string_view key, StoreItem& item) {
  MetaOp op;
  op.key = key;
  op.item = &item;
  return op;
}

MetaOp set_op(std::string_view key, std::string_view value, MetaCmd cmd = MetaCmd::set) {
  MetaOp op;
  op.cmd = cmd;
  op.key = key;
  op.value = value;
  op.flags = 5;
  return op;
}

// Runs io's handlers until `finished` (an open connection's read keeps io busy,
// so io.run() would not return).
template <class Pred>
void run_until(asio::io_context& io, Pred finished) {
  io.restart();
  while (!finished() && io.run_one()) {
  }
  REQUIRE(finished());
}

// Runs one batch to its end on io.
void run_batch(asio::io_context& io, AsyncMetaStore& store, MetaOp* ops, std::size_t n) {
  bool done = false;
  store.async_execute(ops, n, [&] { done = true; });
  run_until(io, [&] { return done; });
}

// One get of many in flight: the key, where its value goes, when it started.
struct Fetch {
  std::string key;
  StoreItem item;
  MetaOp op;
  Steady::time_point started, ended;
  bool done = false;
};

}  // namespace

TEST_CASE("async meta store: each command's reply, and bytes MetaStore reads back") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), mc.config());
  MetaStore blocking(mc.config());

  MetaOp ops[4] = {set_op("a", "one"), set_op("a", "two", MetaCmd::add), set_op("b", "x"),
                   set_op("c", "", MetaCmd::remove)};
  run_batch(io, store, ops, 4);
  CHECK(ops[0].status == StoreStatus::ok);
  CHECK(ops[1].status == StoreStatus::not_stored);
  CHECK(ops[2].status == StoreStatus::ok);
  CHECK(ops[3].status == StoreStatus::not_found);

  StoreItem seen;
  REQUIRE(blocking.get("a", seen) == StoreStatus::ok);
  CHECK(seen.value == "one");
  CHECK(seen.flags == 5);
  REQUIRE(blocking.set("d", std::string(100000, 'z'), 9, 0) == StoreStatus::ok);

  StoreItem a, d, none;
  MetaOp gets[3] = {get_op("a", a), get_op("d", d), get_op("nothing", none)};
  run_batch(io, store, gets, 3);
  CHECK(gets[0].status == StoreStatus::ok);
  CHECK(a.value == "one");
  CHECK(gets[1].status == StoreStatus::ok);
  CHECK(d.value == std::string(100000, 'z'));
  CHECK(d.flags == 9);
  CHECK(gets[2].status == StoreStatus::not_found);

  MetaOp cas = set_op("a", "three", MetaCmd::cas);
  cas.cas = a.cas + 1000;
  MetaOp incr;
  incr.cmd = MetaCmd::incr;
  incr.key = "n";
  incr.initial = 7;
  incr.exptime = 60;
  MetaOp more[2] = {cas, incr};
  run_batch(io, store, more, 2);
  CHECK(more[0].status == StoreStatus::exists);
  CHECK(more[1].status == StoreStatus::ok);
  CHECK(more[1].number == 7);

  // use_future from another thread while the io_context runs.
  auto guard = asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  StoreItem f;
  MetaOp fget = get_op("d", f);
  store.async_execute(&fget, 1, asio::use_future).get();
  CHECK(fget.status == StoreStatus::ok);
  CHECK(f.value.size() == 100000);
  guard.reset();
  io.stop();
  t.join();
  CHECK(store.stats().connects == 1);
}

TEST_CASE("async meta store: 10,000 callers on one thread share one connection") {
  cacheaside_test::MemcachedProcess mc;
  MetaStore blocking(mc.config());
  for (int i = 0; i < 100; ++i)
    REQUIRE(blocking.set("k" + std::to_string(i), "v" + std::to_string(i), 0, 0) ==
            StoreStatus::ok);
  asio::io_context io;
  AsyncMetaStoreLimits lim;
  lim.max_requests = 10000;  // all of them at once, on one connection
  AsyncMetaStore store(io.get_executor(), mc.config() + " --POLL-TIMEOUT=5000", lim);
  std::deque<Fetch> fs(10000);
  int done = 0;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    Fetch& f = fs[i];
    f.key = "k" + std::to_string(i % 150);  // a third of them miss
    f.op = get_op(f.key, f.item);
    store.async_execute(&f.op, 1, [&f, &done] {
      f.done = true;
      ++done;
    });
  }
  run_until(io, [&] { return done == 10000; });
  for (std::size_t i = 0; i < fs.size(); ++i) {
    int k = static_cast<int>(i % 150);
    if (k < 100) {
      REQUIRE(fs[i].op.status == StoreStatus::ok);
      REQUIRE(fs[i].item.value == "v" + std::to_string(k));
    } else {
      REQUIRE(fs[i].op.status == StoreStatus::not_found);
    }
  }
  auto st = store.stats();
  CHECK(st.connects == 1);
  CHECK(st.requests == 10000);
  CHECK(st.writes < 100);  // queued requests go out together
  CHECK(st.refused == 0);
}

TEST_CASE("async meta store: beyond the bound a request fails at once and is counted") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  AsyncMetaStoreLimits lim;
  lim.max_requests = 64;
  AsyncMetaStore store(io.get_executor(), mc.config() + " --POLL-TIMEOUT=5000", lim);
  std::deque<Fetch> fs(1000);
  int done = 0;
  for (Fetch& f : fs) {
    f.key = "k";
    f.op = get_op(f.key, f.item);
    store.async_execute(&f.op, 1, [&] { ++done; });
  }
  run_until(io, [&] { return done == 1000; });
  std::size_t refused = 0, answered = 0;
  for (Fetch& f : fs) {
    if (f.op.status == StoreStatus::unavailable) ++refused;
    if (f.op.status == StoreStatus::not_found) ++answered;
  }
  CHECK(refused + answered == 1000);
  CHECK(answered >= 64);
  CHECK(refused > 0);
  CHECK(store.stats().refused == refused);
}

TEST_CASE("async meta store: a frozen server never stalls the io_context") {
  cacheaside_test::MemcachedProcess mc;
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), mc.config() + " --POLL-TIMEOUT=100");
  StoreItem warm;
  MetaOp w = get_op("k", warm);
  run_batch(io, store, &w, 1);  // connected
  REQUIRE(w.status == StoreStatus::not_found);
  mc.pause();

  // A timer on the same io_context, every 5 ms: how late does it fire?
  asio::steady_timer tick(io);
  Steady::duration worst{};
  int ticks = 0;
  bool ticking = true;
  std::function<void()> arm = [&] {
    auto due = Steady::now() + 5ms;
    tick.expires_at(due);
    tick.async_wait([&, due](boost::system::error_code) {
      worst = std::max(worst, Steady::now() - due);
      ++ticks;
      if (ticking) arm();
    });
  };
  arm();
  std::deque<Fetch> fs(200);
  int done = 0;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    Fetch& f = fs[i];
    f.key = "k" + std::to_string(i);
    f.op = get_op(f.key, f.item);
    f.started = Steady::now();
    store.async_execute(&f.op, 1, [&f, &done, &ticking] {
      f.ended = Steady::now();
      if (++done == 200) ticking = false;
    });
  }
  run_until(io, [&] { return done == 200; });
  mc.resume();
  Steady::duration longest{};
  for (Fetch& f : fs) {
    CHECK(f.op.status == StoreStatus::timeout);
    longest = std::max(longest, f.ended - f.started);
  }
  INFO("longest call " << std::chrono::duration_cast<std::chrono::milliseconds>(longest).count()
                       << " ms, worst timer lateness "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count()
                       << " ms over " << ticks << " ticks");
  CHECK(longest < 300ms);  // the poll timeout, and scheduling
  CHECK(worst < 50ms);
  CHECK(ticks >= 10);
  CHECK(store.stats().timeouts == 200);
  // Thawed: a new connection answers.
  StoreItem after;
  MetaOp a = get_op("k", after);
  run_batch(io, store, &a, 1);
  CHECK(a.status == StoreStatus::not_found);
}

TEST_CASE("async meta store: a dead server fails fast, then is skipped for the retry timeout") {
  int port = 0;
  {
    cacheaside_test::MemcachedProcess mc;
    port = mc.port();
  }  // stopped: nothing listens there
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), "--SERVER=127.0.0.1:" + std::to_string(port) +
                                              " --SERVER-FAILURE-LIMIT=2 --RETRY-TIMEOUT=60");
  auto t0 = Steady::now();
  for (int i = 0; i < 5; ++i) {
    StoreItem it;
    MetaOp op = get_op("k", it);
    run_batch(io, store, &op, 1);
    CHECK(op.status == StoreStatus::unavailable);
  }
  CHECK(Steady::now() - t0 < 1s);
  CHECK(store.stats().connects == 0);
}

TEST_CASE(
    "async meta store: a restart in the middle of a pipeline takes no reply for another key") {
  cacheaside_test::MemcachedProcess mc;
  MetaStore blocking(mc.config());
  auto fill = [&] {
    for (int i = 0; i < 200; ++i)
      blocking.set("k" + std::to_string(i), "v" + std::to_string(i), 0, 0);
  };
  fill();
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), mc.config() + " --POLL-TIMEOUT=2000");
  // Rounds of 64 gets in flight on the io thread while this one restarts memcached.
  std::atomic<int> rounds{0};
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, ok{0}, failed{0};
  struct Round {
    std::deque<Fetch> fs;
    int left = 0;
  };
  auto round = std::make_shared<Round>();
  std::atomic<bool> stopped{false};  // the last round is over: nothing in flight
  std::function<void()> next;
  next = [&] {
    if (stop) return void(stopped = true);
    round->fs.assign(64, Fetch());
    round->left = 64;
    for (std::size_t i = 0; i < 64; ++i) {
      Fetch& f = round->fs[i];
      f.key = "k" + std::to_string((rounds * 64 + i) % 200);
      f.op = get_op(f.key, f.item);
      store.async_execute(&f.op, 1, [&f, &round, &next, &rounds, &ok, &wrong, &failed] {
        if (f.op.status == StoreStatus::ok) {
          (f.item.value == "v" + f.key.substr(1) ? ok : wrong)++;
        } else if (f.op.status != StoreStatus::not_found) {
          failed++;
        }
        if (--round->left == 0) {
          ++rounds;
          next();
        }
      });
    }
  };
  auto guard = asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  asio::post(io, next);
  // Until the store answers again: a server that failed is skipped for the retry timeout.
  auto wait_answers = [&](int n) {
    int want = ok + n;
    auto until = Steady::now() + 20s;
    while (ok < want && Steady::now() < until) std::this_thread::yield();
    return ok >= want;
  };
  bool answered = true;
  int restarts = 0;
  std::string restart_error;
  try {
    for (; restarts < 3 && answered; ++restarts) {
      answered = wait_answers(500);
      mc.stop();
      mc.start();
      fill();
    }
  } catch (const std::exception& e) {
    restart_error = e.what();  // reported after the io thread is joined
  }
  answered = answered && restart_error.empty() && wait_answers(500);
  stop = true;
  auto until = Steady::now() + 20s;
  while (!stopped && Steady::now() < until) std::this_thread::yield();
  guard.reset();
  io.stop();  // the open connection's read would keep it running
  t.join();
  auto st = store.stats();
  INFO("restarts " << restarts << ", ok " << ok << ", failed " << failed << ", connects "
                   << st.connects << ", lost " << st.lost << ", timeouts " << st.timeouts
                   << ", refused " << st.refused << ", requests " << st.requests);
  REQUIRE(restart_error == "");
  REQUIRE(answered);
  REQUIRE(stopped);
  CHECK(wrong == 0);
  CHECK(ok >= 2000);
  CHECK(store.stats().connects >= 4);
}

TEST_CASE("async meta store: an impostor's replies are never taken") {
  cacheaside_test::FakeServer fake([](const std::string& req) -> std::string {
    if (req.rfind("mg ", 0) == 0) return "VA 3 f0 c1 O999\r\nbad\r\n";  // answers another request
    return "HD " + cacheaside_test::opaque_of(req) + "\r\n";
  });
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), fake.config());
  StoreItem a, b;
  MetaOp ops[3] = {set_op("x", "1"), get_op("a", a), get_op("b", b)};
  run_batch(io, store, ops, 3);
  CHECK(ops[0].status == StoreStatus::ok);
  CHECK(ops[1].status == StoreStatus::error);
  CHECK(ops[2].status == StoreStatus::error);
  CHECK(a.value.empty());
  CHECK(store.stats().lost == 1);
}

TEST_CASE("async meta store: config() masks the password; the cache's own twin store keeps it") {
  asio::io_context io;
  AsyncMetaStore s(io.get_executor(), "--SERVER=127.0.0.1:1 --USERNAME=alice --PASSWORD=hunter2");
  CHECK(s.config() == "--SERVER=127.0.0.1:1 --USERNAME=alice --PASSWORD=***");
  CHECK(detail::unmasked_config(s).find("hunter2") != std::string::npos);
  try {
    AsyncMetaStore bad(io.get_executor(), "--USERNAME=alice --PASSWORD=hunter2 half");
    FAIL("no server: refused");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
    CHECK(std::string(e.what()).find("half") == std::string::npos);
  }
}
