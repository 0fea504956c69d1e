// The service with signed values: keys from a file or the environment; bytes copied
// from another user's key and a hand-written value are refused and loaded from the
// database.
#include <sys/stat.h>

#include <cacheaside/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <tuple>

#include "e2e/service.hpp"
#include "support/tls_files.hpp"

using namespace cacheaside_test;

namespace {

// A key file in a fresh directory, removed after.
struct KeyFile {
  explicit KeyFile(const std::string& text, mode_t mode = 0600) {
    char d[] = "/tmp/cacheaside_keysXXXXXX";
    REQUIRE(::mkdtemp(d));
    dir = d;
    path = dir + "/signing.keys";
    std::ofstream(path) << text;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
  }
  ~KeyFile() {
    std::remove(path.c_str());
    ::rmdir(dir.c_str());
  }
  std::string dir, path;
};

const std::string key_line = "k1 0123456789abcdef0123456789abcdef-secret\n";

// user 7's bytes copied under user_5, then a plain JSON value for user 6: both refused.
void refuses_swapped_and_forged(Service& svc) {
  auto c = svc.client();
  RawClient raw(svc.memcached().port());
  CHECK(call(c, "GET", "/users/7").status == 200);
  auto item7 = raw.get("user_7");
  REQUIRE(item7);
  CHECK(item7->flags == cacheaside::envelope::value_flags(cacheaside::codec_id::json, true));
  REQUIRE(raw.set("user_5", item7->value, item7->flags));
  CHECK(call(c, "GET", "/users/5").body ==
        R"({"id":5,"name":"user5","email":"user5@example.com"})");
  REQUIRE(raw.set("user_6", R"({"id":6,"name":"mallory","email":"m@example.com"})", 0));
  CHECK(call(c, "GET", "/users/6").body ==
        R"({"id":6,"name":"user6","email":"user6@example.com"})");
  CHECK(svc.metric("integrity_failures", "user") == 2);
  CHECK(svc.metric("loads", "user") == 3);
  CHECK(call(c, "GET", "/users/5").status == 200);  // overwritten: a hit now
  CHECK(svc.metric("loads", "user") == 3);
}

}  // namespace

TEST_CASE("signed values: keys from --signing-keys; a swapped or forged value is refused",
          "[e2e]") {
  KeyFile keys("# the first line signs\n" + key_line);
  Setup s;
  s.extra = {"--signing-keys", keys.path};
  Service svc(s);
  refuses_swapped_and_forged(svc);
  CHECK(svc.log().find("signed with key k1") != std::string::npos);
}

TEST_CASE("signed values: keys from USER_SERVICE_SIGNING_KEYS", "[e2e]") {
  ::setenv("USER_SERVICE_SIGNING_KEYS", key_line.c_str(), 1);
  Service svc;
  ::unsetenv("USER_SERVICE_SIGNING_KEYS");
  refuses_swapped_and_forged(svc);
}

TEST_CASE("a key file others may read, or a short secret, stops the service with a clear error",
          "[e2e]") {
  for (auto [text, mode, why] :
       {std::tuple<std::string, mode_t, std::string>{key_line, 0644, "chmod 600"},
        {"k1 short\n", 0600, "at least 32 bytes"}}) {
    KeyFile keys(text, mode);
    MemcachedProcess mc;
    char d[] = "/tmp/cacheaside_e2eXXXXXX";
    REQUIRE(::mkdtemp(d));
    std::string out = std::string(d) + "/out";
    std::string cmd = std::string(USER_SERVICE_BIN) + " --port 1 --db " + d +
                      "/users.db --memcached " + mc.config() + " --signing-keys " + keys.path +
                      " >" + out + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream in(out);
    std::stringstream ss;
    ss << in.rdbuf();
    INFO(ss.str());
    CHECK(rc != 0);
    CHECK(ss.str().find(why) != std::string::npos);
    CHECK(std::system(("rm -rf " + std::string(d)).c_str()) == 0);
  }
}

#ifdef CACHEASIDE_TEST_WITH_TLS
TEST_CASE("the service over TLS with memcached credentials and signed values", "[e2e][meta]") {
  const TlsFiles& tls = TlsFiles::get();
  KeyFile keys(key_line);
  KeyFile creds("svc:an-auth-secret-of-some-length\n");       // mode 600: the service's copy
  std::string server_creds = tls.path("memcached_e2e.auth");  // memcached may read it as nobody
  std::ofstream(server_creds) << "svc:an-auth-secret-of-some-length\n";
  REQUIRE(::chmod(server_creds.c_str(), 0644) == 0);
  Setup s;
  s.memcached_args = tls.server_args();
  s.memcached_args.push_back("-Y");
  s.memcached_args.push_back(server_creds);
  s.extra = {"--signing-keys",        keys.path, "--memcached-tls-ca", tls.ca(),
             "--memcached-auth-file", creds.path};
  {
    Service svc(s);
    auto c = svc.client();
    for (int i = 0; i < 3; ++i) CHECK(call(c, "GET", "/users/5").status == 200);
    CHECK(svc.metric("loads", "user") == 1);  // then hits, through TLS and authenticated
    CHECK(call(c, "PUT", "/users/5", R"({"name":"five","email":"5@example.com"})").status == 200);
    CHECK(call(c, "GET", "/users/5").body == R"({"id":5,"name":"five","email":"5@example.com"})");
    CHECK(svc.metric("cache_errors", "user") == 0);
    CHECK(svc.log().find("TLS") != std::string::npos);
  }

  // Without the credentials the service still answers, from the database.
  Setup no_creds = s;
  no_creds.extra = {"--memcached-tls-ca", tls.ca()};
  Service svc(no_creds);
  auto c = svc.client();
  CHECK(call(c, "GET", "/users/5").status == 200);
  CHECK(svc.metric("cache_errors", "user") >= 1);
}
#endif  // CACHEASIDE_TEST_WITH_TLS
