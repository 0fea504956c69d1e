// Format::raw against another client: pymemcache with serde=None, as the original Python
// service uses it (values are plain JSON bytes, flags 0).
#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <cstdio>

#include "support/common.hpp"
#include "support/user.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

// Runs a Python snippet; returns its stdout. `port` is passed as argv[1].
std::string python(const std::string& code, int port) {
  std::string path = "/tmp/cacheaside_interop_" + std::to_string(::getpid()) + ".py";
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fputs(code.c_str(), f);
  std::fclose(f);
  std::string cmd = std::string(CACHEASIDE_PYTHON3) + " " + path + " " + std::to_string(port);
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  std::remove(path.c_str());
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}
}  // namespace

TEST_CASE("raw format interoperates with pymemcache both ways", "[interop]") {
  Server srv;
  std::atomic<int> loads{0};
  Options o;
  o.format = Format::raw;
  o.ttl = std::chrono::seconds(60);
  TestCache<std::string, std::vector<User>, JsonSerializer<std::vector<User>>> lists(
      srv.store,
      [&](const std::string&) -> std::optional<std::vector<User>> {
        ++loads;
        return std::vector<User>{{1, "user1", "user1@example.com"}, {2, "user2", "b@x"}};
      },
      o);

  // Python writes users_all like the original service; we read it as a hit. (It waits
  // for STORED: pymemcache's default noreply returns before memcached applied the set,
  // and our get, on another connection, could come first.)
  python(R"(
import sys, json
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])), serde=None)
ok = c.set("users_all", json.dumps([{"id": 7, "name": "py", "email": "py@example.com"}]),
           expire=60, noreply=False)
assert ok
)",
         srv.process.port());
  auto from_py = lists.get("users_all");
  REQUIRE(from_py);
  REQUIRE(from_py->size() == 1);
  CHECK((*from_py)[0].name == "py");
  CHECK(loads == 0);
  CHECK(lists.stats().hits == 1);

  // We write; Python reads plain JSON.
  lists.invalidate("users_all");
  lists.get("users_all");
  CHECK(loads == 1);
  std::string out = python(R"(
import sys, json
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])), serde=None)
v = c.get("users_all")
users = json.loads(v)
print(len(users), users[0]["name"], users[1]["email"])
)",
                           srv.process.port());
  CHECK(out == "2 user1 b@x\n");
}
