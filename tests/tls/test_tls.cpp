// TLS and authentication through MetaStore and AsyncMetaStore, against real
// memcached processes started with certificates these tests make: every store
// operation, verification refusals (wrong CA, wrong name, expired), mutual TLS,
// persistent connections (handshakes counted), memcached 1.6.18's pipelined-store
// hang, and credentials over TLS.
#include <boost/asio/io_context.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/cache_aside.hpp>
#include <cacheaside/meta.hpp>
#include <cacheaside/tls.hpp>
#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "support/memcached_process.hpp"
#include "support/tls_files.hpp"

using namespace cacheaside;
using namespace cacheaside_test;
namespace asio = boost::asio;

namespace {

const TlsFiles& files() { return TlsFiles::get(); }

std::string tls_config(const MemcachedProcess& p, const std::string& more = "") {
  return p.config() + " --TLS-CA=" + files().ca() + (more.empty() ? "" : " " + more);
}

// memcached -Y wants this file; it reads it as nobody.
std::string auth_file(const std::string& line) {
  std::string path = files().path("auth_" + std::to_string(::getpid()));
  std::ofstream(path) << line << "\n";
  ::chmod(path.c_str(), 0644);
  return path;
}

// A cache whose loader counts: a store that fails still answers from it.
struct CountingCache {
  int loads = 0;
  CacheAside<std::string, std::string, StringSerializer> cache;
  explicit CountingCache(std::shared_ptr<Store> store, Options o = {})
      : cache(
            std::move(store),
            [this](const std::string& k) -> std::optional<std::string> {
              ++loads;
              return "row " + k;
            },
            std::move(o)) {}
};

void check_refused(const std::string& config, const std::string& why) {
  auto store = std::make_shared<MetaStore>(config);
  std::string reason;
  Options o;
  o.on_event = [&](const Event& e) {
    if (e.type == EventType::cache_error && reason.empty()) reason = e.reason;
  };
  CountingCache c(store, o);
  CHECK(c.cache.get("k") == "row k");
  CHECK(reason == "connection refused at TLS set-up: unavailable");
  CHECK(c.cache.get("k") == "row k");
  CHECK(c.loads == 2);
  ConnectionStats cs = store->connection_stats();
  CHECK(cs.handshakes == 0);
  CHECK(cs.tls_failures >= 1);
  CHECK_THAT(cs.last_error, Catch::Contains(why));
}

// Runs io until `done`.
template <class Pred>
void run_until(asio::io_context& io, Pred done) {
  io.restart();
  while (!done() && io.run_one()) {
  }
  REQUIRE(done());
}

detail::MetaOp op(detail::MetaCmd cmd, std::string_view key, std::string_view value,
                  StoreItem* item = nullptr) {
  detail::MetaOp o;
  o.cmd = cmd;
  o.key = key;
  o.value = value;
  o.item = item;
  return o;
}

}  // namespace

TEST_CASE("tls: every store operation over TLS, on persistent connections") {
  MemcachedProcess mc(files().server_args());
  MetaStore store(tls_config(mc, "--POOL-MAX=4"));
  StoreItem item;
  REQUIRE(store.set("a", "1", 7, 60) == StoreStatus::ok);
  REQUIRE(store.get("a", item) == StoreStatus::ok);
  CHECK((item.value == "1" && item.flags == 7));
  CHECK(store.add("a", "2", 0, 60) == StoreStatus::not_stored);
  CHECK(store.add("b", "2", 0, 60) == StoreStatus::ok);
  CHECK(store.cas("a", "3", 0, 60, item.cas) == StoreStatus::ok);
  CHECK(store.cas("a", "4", 0, 60, item.cas) == StoreStatus::exists);
  std::uint64_t n = 0;
  CHECK(store.incr("n", 5, 10, 60, n) == StoreStatus::ok);
  CHECK(store.incr("n", 5, 10, 60, n) == StoreStatus::ok);
  CHECK(n == 15);
  std::vector<StoreItem> items;
  std::vector<char> found;
  CHECK(store.get_multi({"a", "b", "none"}, items, found) == StoreStatus::ok);
  REQUIRE(items.size() == 3);
  CHECK((items[0].value == "3" && items[1].value == "2" && !found[2]));
  CHECK(store.remove("a") == StoreStatus::ok);
  CHECK(store.get("a", item) == StoreStatus::not_found);
  std::string big(512 * 1024, 'x');  // records of 16 KiB each way
  REQUIRE(store.set("big", big, 0, 60) == StoreStatus::ok);
  REQUIRE(store.get("big", item) == StoreStatus::ok);
  CHECK(item.value == big);

  // 10,000 operations from 4 threads: no more handshakes than connections.
  std::vector<std::thread> ts;
  std::atomic<int> failed{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      StoreItem it;
      for (int i = 0; i < 2500; ++i) {
        std::string k = "k" + std::to_string(t * 2500 + i);
        if (store.set(k, k, 0, 60) != StoreStatus::ok || store.get(k, it) != StoreStatus::ok)
          ++failed;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(failed == 0);
  ConnectionStats cs = store.connection_stats();
  CHECK(cs.handshakes >= 1);
  CHECK(cs.handshakes <= 4);
  CHECK(cs.tls_failures == 0);
}

TEST_CASE("tls: a wrong CA, a name not in the certificate, an expired one are refused") {
  MemcachedProcess good(files().server_args());
  check_refused(good.config() + " --TLS-CA=" + files().other_ca(), "certificate");
  check_refused(tls_config(good, "--TLS-SERVER-NAME=elsewhere.example"), "hostname mismatch");
  MemcachedProcess wrong_name(files().server_args("wrong_name.pem"));
  check_refused(tls_config(wrong_name), "address mismatch");
  MemcachedProcess expired(files().server_args("expired.pem"));
  check_refused(tls_config(expired), "expired");
  // A name OpenSSL will not set (SNI carries at most 255 bytes): the session fails
  // before its handshake, rather than check the chain without the name.
  check_refused(tls_config(good, "--TLS-SERVER-NAME=" + std::string(300, 'a')),
                "cannot be checked");
  // Verification off takes an option that says so, and then anything goes.
  MetaStore insecure(good.config() + " --TLS-INSECURE-NO-VERIFY");
  CHECK(insecure.set("k", "v", 0, 60) == StoreStatus::ok);
  // A server that does not speak TLS: a clear error within the connect timeout.
  MemcachedProcess plain;
  check_refused(tls_config(plain, "--CONNECT-TIMEOUT=500"), "TLS");
  // A CA file that does not load is a configuration error.
  CHECK_THROWS_WITH(MetaStore(good.config() + " --TLS-CA=/nonexistent.pem"),
                    Catch::Contains("cannot load the CA file"));
}

TEST_CASE("tls: mutual TLS with and without a client certificate") {
  MemcachedProcess mc(files().server_args("server.pem", true));
  std::string client =
      " --TLS-CERT=" + files().path("client.pem") + " --TLS-KEY=" + files().path("client.key");
  MetaStore with(tls_config(mc) + client);
  StoreItem item;
  REQUIRE(with.set("k", "v", 0, 60) == StoreStatus::ok);
  CHECK(with.get("k", item) == StoreStatus::ok);

  auto without = std::make_shared<MetaStore>(tls_config(mc));
  CountingCache c(without);
  CHECK(c.cache.get("k") == "row k");
  CHECK(c.loads == 1);
  INFO(without->connection_stats().last_error);
  CHECK(without->connection_stats().tls_failures >= 1);
}

TEST_CASE("tls: pipelined stores past 16 KiB do not hang memcached 1.6.18") {
  // Without a window, memcached stops reading after ~14 KiB of these.
  MemcachedProcess mc(files().server_args());
  MetaStore store(tls_config(mc, "--POLL-TIMEOUT=3000"));
  std::vector<std::string> keys, values;
  for (int i = 0; i < 300; ++i) {
    keys.push_back("p" + std::to_string(i));
    values.push_back(std::string(100 + i * 7, 'a' + i % 26));
  }
  std::vector<detail::MetaOp> ops;
  for (int i = 0; i < 300; ++i) ops.push_back(op(detail::MetaCmd::set, keys[i], values[i]));
  store.execute(ops.data(), ops.size());
  for (auto& o : ops) CHECK(o.status == StoreStatus::ok);
  std::vector<StoreItem> got;
  std::vector<char> found;
  REQUIRE(store.get_multi(keys, got, found) == StoreStatus::ok);
  for (int i = 0; i < 300; ++i) CHECK(got[i].value == values[i]);

  asio::io_context io;
  AsyncMetaStore async(io.get_executor(), tls_config(mc, "--POLL-TIMEOUT=3000"));
  std::vector<detail::MetaOp> aops;
  for (int i = 0; i < 300; ++i) aops.push_back(op(detail::MetaCmd::set, keys[i], values[299 - i]));
  bool done = false;
  async.async_execute(aops.data(), aops.size(), [&] { done = true; });
  run_until(io, [&] { return done; });
  for (auto& o : aops) CHECK(o.status == StoreStatus::ok);
  REQUIRE(store.get_multi(keys, got, found) == StoreStatus::ok);
  for (int i = 0; i < 300; ++i) CHECK(got[i].value == values[299 - i]);
  CHECK(async.connection_stats().handshakes == 1);
}

TEST_CASE("tls: AsyncMetaStore over TLS: round trips, refusals, and the loader answering") {
  MemcachedProcess mc(files().server_args());
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), tls_config(mc));
  StoreItem item;
  auto set = op(detail::MetaCmd::set, "k", "v");
  auto get = op(detail::MetaCmd::get, "k", "", &item);
  bool done = false;
  store.async_execute(&set, 1, [&] { done = true; });
  run_until(io, [&] { return done; });
  REQUIRE(set.status == StoreStatus::ok);
  for (int i = 0; i < 100; ++i) {
    done = false;
    store.async_execute(&get, 1, [&] { done = true; });
    run_until(io, [&] { return done; });
    REQUIRE(get.status == StoreStatus::ok);
    CHECK(item.value == "v");
  }
  CHECK(store.connection_stats().handshakes == 1);
  // Idle, the connection holds no work: run() returns.
  io.restart();
  io.run();

  AsyncMetaStore wrong(io.get_executor(), mc.config() + " --TLS-CA=" + files().other_ca());
  auto get2 = op(detail::MetaCmd::get, "k", "", &item);
  done = false;
  wrong.async_execute(&get2, 1, [&] { done = true; });
  run_until(io, [&] { return done; });
  CHECK(get2.status == StoreStatus::unavailable);
  CHECK(wrong.connection_stats().tls_failures == 1);
  CHECK_THAT(wrong.connection_stats().last_error, Catch::Contains("certificate"));
}

TEST_CASE("tls: credentials over TLS, right and wrong, blocking and async") {
  std::string file = auth_file("alice:s3cret-pass");
  std::vector<std::string> args = files().server_args();
  args.push_back("-Y");
  args.push_back(file);
  MemcachedProcess mc(args);
  MetaStore right(tls_config(mc, "--USERNAME=alice --PASSWORD=s3cret-pass"));
  StoreItem item;
  REQUIRE(right.set("k", "v", 0, 60) == StoreStatus::ok);
  CHECK(right.get("k", item) == StoreStatus::ok);
  mc.stop();
  mc.start();
  CHECK(right.set("k", "w", 0, 60) == StoreStatus::ok);  // a new connection: TLS and auth again
  CHECK(right.connection_stats().handshakes == 2);

  auto wrong = std::make_shared<MetaStore>(tls_config(mc, "--USERNAME=alice --PASSWORD=nope"));
  CountingCache c(wrong);
  CHECK(c.cache.get("k") == "row k");
  CHECK(wrong->connection_stats().auth_failures == 1);
  CHECK_THAT(wrong->connection_stats().last_error, Catch::Contains("refused the credentials"));

  asio::io_context io;
  for (const char* creds :
       {"--USERNAME=alice --PASSWORD=s3cret-pass", "--USERNAME=alice --PASSWORD=nope"}) {
    AsyncMetaStore store(io.get_executor(), tls_config(mc, creds));
    auto get = op(detail::MetaCmd::get, "k", "", &item);
    bool done = false;
    store.async_execute(&get, 1, [&] { done = true; });
    run_until(io, [&] { return done; });
    bool good = std::string(creds).find("nope") == std::string::npos;
    CHECK(get.status == (good ? StoreStatus::ok : StoreStatus::unavailable));
    CHECK(store.connection_stats().auth_failures == (good ? 0u : 1u));
  }
}

TEST_CASE("auth: AsyncMetaStore authenticates in plaintext too") {
  std::string file = auth_file("bob:another-secret");
  MemcachedProcess mc({"-Y", file});
  asio::io_context io;
  AsyncMetaStore store(io.get_executor(), mc.config() + " --AUTH-FILE=" + file);
  auto set = op(detail::MetaCmd::set, "k", "v");
  bool done = false;
  store.async_execute(&set, 1, [&] { done = true; });
  run_until(io, [&] { return done; });
  CHECK(set.status == StoreStatus::ok);
  CHECK(store.connection_stats().handshakes == 0);
}
