#include <catch2/catch.hpp>
#include <set>

#include "support/common.hpp"
#include "support/raw_client.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {
std::vector<std::string> hostile_keys() {
  return {"x\r\nflush_all\r\n",
          "a b",
          "",
          std::string("nul\0byte", 8),
          "tab\there",
          "%",
          "%41",
          "A",
          "caf\xc3\xa9",
          "\x7f\xff",
          "get other\r\n",
          "set x 0 0 1\r\nx\r\n",
          std::string(250, 'a'),
          std::string(251, 'a'),
          std::string(250, 'a') + "b",
          std::string(300, ' '),
          std::string(1000, 'k') + "1",
          std::string(1000, 'k') + "2"};
}
}  // namespace

TEST_CASE("plain printable keys are stored unchanged", "[keys][nostore]") {
  CHECK(encode_key("user_42") == "user_42");
  CHECK(encode_key("users_all") == "users_all");
  CHECK(encode_key(std::string(250, 'z')) == std::string(250, 'z'));
}

TEST_CASE("hostile keys are encoded safely and never collide", "[keys][nostore]") {
  std::set<std::string> encoded;
  for (const auto& k : hostile_keys()) {
    std::string e = encode_key(k);
    INFO("key of size " << k.size());
    CHECK(e.size() <= max_key_length);
    for (unsigned char c : e) CHECK((c > 0x20 && c < 0x7f));
    encoded.insert(e);
  }
  CHECK(encoded.size() == hostile_keys().size());
  CHECK(encode_key("a b") == "a%20b");
  CHECK(encode_key("%41") == "%2541");
  CHECK(encode_key(std::string(251, 'a')).find("%H") != std::string::npos);
}

TEST_CASE("hostile keys against memcached run no command", "[keys][memcached]") {
  Server srv;
  std::map<std::string, int> loads;
  StringCache cache(srv.store, [&](const std::string& k) -> std::optional<std::string> {
    ++loads[k];
    return "value of " + k;
  });
  auto keys = hostile_keys();
  for (const auto& k : keys) REQUIRE(cache.get(k) == "value of " + k);
  for (const auto& k : keys) REQUIRE(cache.get(k) == "value of " + k);
  for (const auto& k : keys) CHECK(loads[k] == 1);
  CHECK(cache.stats().hits == keys.size());
  CHECK(cache.stats().cache_errors == 0);

  RawClient raw(srv.process.port());
  auto stats = raw.stats();
  CHECK(stats["cmd_flush"] == "0");
  CHECK(stats["curr_items"] == std::to_string(keys.size()));
  CHECK(stats["cmd_touch"] == "0");
  // every item is still there: nothing was flushed or overwritten by an injected command
  for (const auto& k : keys) CHECK(cache.peek(k) == "value of " + k);
}

TEST_CASE("prefix and key together are limited to 250 bytes", "[keys][nostore]") {
  InMemoryStore mem;
  auto store = std::make_shared<InMemoryStore>();
  Options o;
  o.key_prefix = std::string(200, 'p');
  StringCache cache(
      store, [](const std::string& k) { return std::optional<std::string>(k); }, o);
  std::string a = cache.cache_key(std::string(60, 'x'));
  std::string b = cache.cache_key(std::string(60, 'x') + "y");
  CHECK(a.size() <= 250);
  CHECK(b.size() <= 250);
  CHECK(a != b);
  CHECK(cache.cache_key("42") == std::string(200, 'p') + "42");
}

TEST_CASE("key_traits covers integers and strings", "[keys][nostore]") {
  auto store = std::make_shared<InMemoryStore>();
  Options o;
  o.key_prefix = "user_";
  TestCache<int, std::string, StringSerializer> by_int(
      store, [](const int& i) { return std::optional<std::string>(std::to_string(i)); }, o);
  CHECK(by_int.cache_key(42) == "user_42");
  CHECK(by_int.cache_key(-7) == "user_-7");
  TestCache<std::uint64_t, std::string, StringSerializer> by_u64(
      store, [](const std::uint64_t& i) { return std::optional<std::string>(std::to_string(i)); });
  CHECK(by_u64.cache_key(18446744073709551615ull) == "18446744073709551615");
}
