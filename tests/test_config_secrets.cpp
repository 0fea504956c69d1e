// What a configuration may say about itself: no error, accessor or shown string
// carries a password (whole or a piece of one split at whitespace), and what
// would change the meaning of the options (a server that carries an option, a
// contradiction about TLS verification) is refused.
#include <cacheaside/libmemcached.hpp>
#include <cacheaside/meta.hpp>
#include <cacheaside/server_options.hpp>
#include <catch2/catch.hpp>
#include <functional>
#include <string>

using namespace cacheaside;

namespace {

// The text of the Error f throws ("" if none): it must not hold any of secrets.
std::string secret_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_no_secret(const std::string& text, std::initializer_list<const char*> secrets) {
  INFO(text);
  for (const char* s : secrets) CHECK(text.find(s) == std::string::npos);
}

}  // namespace

TEST_CASE("secrets: redact_config masks passwords and words that may be part of one", "[nostore]") {
  CHECK(redact_config("--SERVER=a:1 --PASSWORD=hunter2 --USERNAME=alice") ==
        "--SERVER=a:1 --PASSWORD=*** --USERNAME=alice");
  CHECK(redact_config("--password=hunter2 secret  tail --TLS") == "--password=*** *** *** --TLS");
  CHECK(redact_config("  a:1\t--POOL-MAX=2 ") == "a:1 --POOL-MAX=2");
  CHECK(redact_config("--PASSWORDS=x") == "--PASSWORDS=x");  // another option's name
}

TEST_CASE("secrets: MetaStore's errors and config() carry no password", "[nostore]") {
  const char* const split = "--USERNAME=alice --PASSWORD=hunter2 secret-half --TLS";
  // A password with a space: the second half is a stray word, never quoted.
  std::string e =
      secret_error_of([&] { MetaStore s(std::string("--SERVER=127.0.0.1:1 ") + split); });
  CHECK(e.find("after --PASSWORD") != std::string::npos);
  check_no_secret(e, {"hunter2", "secret-half"});
  e = secret_error_of([&] { MetaStore s(split); });
  check_no_secret(e, {"hunter2", "secret-half"});
  // No server: the configuration is quoted, masked.
  e = secret_error_of([] { MetaStore s("--USERNAME=alice --PASSWORD=hunter2"); });
  CHECK(e.find("--PASSWORD=***") != std::string::npos);
  check_no_secret(e, {"hunter2"});
  // A password with " --" in it: the piece that looks like an option is not named.
  e = secret_error_of(
      [] { MetaStore s("--SERVER=127.0.0.1:1 --PASSWORD=a --hunter2 --USERNAME=u"); });
  CHECK(e.find("does not support") != std::string::npos);
  check_no_secret(e, {"HUNTER2", "hunter2"});

  MetaStore ok("--SERVER=127.0.0.1:1 --USERNAME=alice --PASSWORD=hunter2");
  CHECK(ok.config() == "--SERVER=127.0.0.1:1 --USERNAME=alice --PASSWORD=***");

  ServerOptions so;
  so.servers = {"127.0.0.1:1"};
  so.username = "alice";
  so.password = "hunter2 secret";
  e = secret_error_of([&] { MetaStore s(so); });
  CHECK(e.find("whitespace") != std::string::npos);
  check_no_secret(e, {"hunter2", "secret"});
}

TEST_CASE("secrets: MemcachedStore's errors and config() carry no password", "[nostore]") {
  // libmemcached's own message quotes the configuration it refused.
  std::string e =
      secret_error_of([] { MemcachedStore s("--SERVER=127.0.0.1:1 --PASSWORD=hunter2 --NOPE=1"); });
  CHECK(e.find("bad libmemcached configuration") != std::string::npos);
  check_no_secret(e, {"hunter2"});
  e = secret_error_of([] { MemcachedStore s("--PASSWORD=hunter2 secret-half --USERNAME=alice"); });
  CHECK(!e.empty());
  check_no_secret(e, {"hunter2", "secret-half"});
  // Debian's libmemcached has no SASL: credentials are refused, and not quoted.
  e = secret_error_of(
      [] { MemcachedStore s("--SERVER=127.0.0.1:1 --USERNAME=alice --PASSWORD=hunter2"); });
  CHECK(e.find("--PASSWORD=***") != std::string::npos);
  check_no_secret(e, {"hunter2"});
}

TEST_CASE("secrets: a server entry cannot carry an option", "[nostore]") {
  ServerOptions so;
  so.servers = {"127.0.0.1:41004 --TLS-INSECURE-NO-VERIFY"};
  so.tls.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  CHECK_THROWS_WITH(so.to_config(), Catch::Contains("whitespace"));
  so.servers = {"--TLS-INSECURE-NO-VERIFY"};
  CHECK_THROWS_WITH(so.to_config(), Catch::Contains("is not a host:port"));
  so.servers = {"127.0.0.1:41004\n--TLS"};
  CHECK_THROWS_WITH(so.to_config(), Catch::Contains("whitespace"));
  so.servers = {"127.0.0.1:41004", "[::1]:11211"};
  CHECK(so.to_config().find("--SERVER=[::1]:11211") != std::string::npos);
}

TEST_CASE("secrets: TLS verification off beside what only verification uses is refused",
          "[nostore]") {
  const std::string base = "--SERVER=127.0.0.1:1 --TLS-INSECURE-NO-VERIFY ";
  CHECK_THROWS_WITH(MetaStore(base + "--TLS-CA=/tmp/ca.pem"),
                    Catch::Contains("contradicts --TLS-CA"));
  CHECK_THROWS_WITH(MetaStore(base + "--TLS-SERVER-NAME=cache.example"),
                    Catch::Contains("contradicts --TLS-SERVER-NAME"));
  CHECK_THROWS_WITH(MetaStore(base + "--TLS-CERT=/tmp/c.pem --TLS-KEY=/tmp/c.key"),
                    Catch::Contains("contradicts --TLS-CERT"));
  CHECK_THROWS_WITH(MetaStore(base + "--USERNAME=alice --PASSWORD=hunter2"),
                    Catch::Contains("credentials are not sent"));
  // The same through ServerOptions, in either order.
  ServerOptions so;
  so.servers = {"127.0.0.1:1"};
  so.tls.insecure_no_verify = true;
  so.tls.ca_file = "/tmp/ca.pem";
  CHECK_THROWS_WITH(MetaStore(so), Catch::Contains("contradicts"));
  CHECK_THROWS_WITH(MetaStore("--SERVER=127.0.0.1:1 --TLS-CA=/tmp/ca.pem --TLS-INSECURE-NO-VERIFY"),
                    Catch::Contains("contradicts"));
}
