// memcached's ASCII authentication (memcached -Y) through MetaStore: the
// credentials go first on every connection, a refusal is a clear error that
// does not turn into a reconnect storm, and a restart authenticates again.
#include <sys/stat.h>

#include <cacheaside/meta.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "support/common.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// A memcached that wants `user:password` from an auth file it reads itself.
struct AuthServer {
  std::string file = write("alice:s3cret-pass\n");
  MemcachedProcess process{{"-Y", file}};

  static std::string write(const std::string& body) {
    static int n = 0;
    std::string path =
        "/tmp/cacheaside_auth_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
    std::ofstream(path) << body;
    ::chmod(path.c_str(), 0644);  // memcached may read it as nobody
    return path;
  }
  ~AuthServer() { std::remove(file.c_str()); }
  std::string config(const std::string& creds) const { return process.config() + " " + creds; }
};

}  // namespace

TEST_CASE("auth: MetaStore authenticates each connection, and again after a restart", "[meta]") {
  AuthServer srv;
  MetaStore store(srv.config("--USERNAME=alice --PASSWORD=s3cret-pass --POOL-MAX=2"));
  StoreItem item;
  REQUIRE(store.set("k", "v", 0, 60) == StoreStatus::ok);
  REQUIRE(store.get("k", item) == StoreStatus::ok);
  CHECK(item.value == "v");
  srv.process.stop();
  srv.process.start();
  // The first call after a restart finds its pooled connection dead and retries
  // on a new one, which authenticates again.
  CHECK(store.set("k", "w", 0, 60) == StoreStatus::ok);
  REQUIRE(store.get("k", item) == StoreStatus::ok);
  CHECK(item.value == "w");
  CHECK(store.connection_stats().auth_failures == 0);

  // The same credentials from a file in memcached's own format.
  std::string file = AuthServer::write("alice:s3cret-pass\n");
  MetaStore from_file(srv.config("--AUTH-FILE=" + file));
  CHECK(from_file.get("k", item) == StoreStatus::ok);
  std::remove(file.c_str());
}

TEST_CASE("auth: wrong or missing credentials are a clear error; the loader answers", "[meta]") {
  AuthServer srv;
  Options o;
  o.name = "auth";
  std::mutex mu;
  std::vector<std::string> reasons;
  o.on_event = [&](const Event& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (e.type == EventType::cache_error) reasons.emplace_back(e.reason);
  };
  MetaStore wrong_store(
      srv.config("--USERNAME=alice --PASSWORD=wrong --SERVER-FAILURE-LIMIT=2 "
                 "--RETRY-TIMEOUT=60"));
  std::shared_ptr<Store> wrong(&wrong_store, [](Store*) {});
  int loads = 0;
  StringCache cache(
      wrong,
      [&](const std::string&) -> std::optional<std::string> {
        ++loads;
        return "db";
      },
      o);
  for (int i = 0; i < 10; ++i) CHECK(cache.get("k") == "db");
  CHECK(loads == 10);
  ConnectionStats cs = wrong_store.connection_stats();
  // failure_limit refusals, then the server is skipped for the retry timeout:
  // no connection per call.
  CHECK(cs.auth_failures == 2);
  CHECK(cs.last_error.find("refused the credentials") != std::string::npos);
  // The cache's events say why, as far as a call knows: refused, then skipped.
  REQUIRE(!reasons.empty());
  CHECK(reasons.front() == "memcached refused the credentials: unavailable");

  MetaStore none(srv.process.config());  // no credentials: memcached refuses every command
  StoreItem item;
  CHECK(none.get("k", item) != StoreStatus::ok);
  CHECK(none.set("k", "v", 0, 60) != StoreStatus::ok);
}

TEST_CASE("auth: credentials against a memcached without -Y store nothing readable", "[meta]") {
  MemcachedProcess plain;
  MetaStore store(plain.config() + " --USERNAME=alice --PASSWORD=s3cret-pass");
  StoreItem item;
  REQUIRE(store.set("k", "v", 0, 60) == StoreStatus::ok);
  CHECK(store.get("cacheaside_auth", item) == StoreStatus::not_found);
}

TEST_CASE("auth: configuration errors are refused up front", "[nostore]") {
  CHECK_THROWS_WITH(MetaStore("--SERVER=127.0.0.1:1 --USERNAME=alice"),
                    Catch::Contains("--USERNAME and --PASSWORD go together"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=127.0.0.1:1 --AUTH-FILE=/nonexistent/x"),
                    Catch::Contains("cannot read the auth file"));
  std::string bad = AuthServer::write("no colon here\n");
  CHECK_THROWS_WITH(MetaStore("--SERVER=127.0.0.1:1 --AUTH-FILE=" + bad),
                    Catch::Contains("user:password"));
  std::remove(bad.c_str());
  ServerOptions so;
  so.servers = {"127.0.0.1:1"};
  so.username = "alice";
  so.password = "pa\tss";
  CHECK_THROWS_WITH(MetaStore(so), Catch::Contains("whitespace"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=127.0.0.1:1 --TLS"),
                    Catch::Contains("include <cacheaside/tls.hpp>"));
}
