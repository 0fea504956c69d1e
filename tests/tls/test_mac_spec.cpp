// docs/wire-format.md's MACs, rebuilt from the text alone: the MAC key derived from the
// secret, the message laid out in the order the spec gives, the tag computed with
// OpenSSL's HMAC (not the library's), and compared with what the library stored, for
// signed values, signed negative entries and signed near-log records.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/detail/near/near_log.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace cacheaside;

namespace {

using Cache = CacheAside<std::string, std::string, StringSerializer>;

// HMAC-SHA256 of message under key, by OpenSSL: 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const unsigned char* done =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
  REQUIRE(done != nullptr);
  REQUIRE(len == 32);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// "the key's MAC key, HMAC-SHA256(secret, "cacheaside value mac")".
std::string mac_key(std::string_view secret) { return hmac_sha256(secret, "cacheaside value mac"); }

std::string little_endian32(std::uint32_t v) {
  std::string out;
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

std::string lower_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xF];
  }
  return out;
}

// The message of a signed value stored under mkey with flags: one byte with the key's
// length, the flags (4 bytes, little-endian), the key, the header and key id (bytes 0 to
// 15 + n), the payload (bytes 48 + n onwards); the tag's own 32 bytes left out.
std::string value_message(std::string_view mkey, std::uint32_t flags, std::string_view bytes) {
  std::size_t n = static_cast<unsigned char>(bytes[2]);
  std::string m;
  m += static_cast<char>(mkey.size());
  m += little_endian32(flags);
  m.append(mkey);
  m.append(bytes.substr(0, 16 + n));
  m.append(bytes.substr(48 + n));
  return m;
}

// The message of a near-log record of the log `base`: the byte 0xFF, one byte with the
// length of base, base, then "<seq> <memcached key>".
std::string record_message(std::string_view base, std::string_view record) {
  std::string m;
  m += static_cast<char>(0xFF);
  m += static_cast<char>(base.size());
  m.append(base);
  m.append(record);
  return m;
}

const std::string secret_short(32, 's');  // the minimum
const std::string secret_long(100, 'L');  // longer than HMAC's 64-byte block
const std::string secret_old = "an older key that only verifies, 32+ bytes";

Options signing(const std::string& secret) {
  Options o;
  o.name = "spec";
  o.key_prefix = "spec_";
  o.ttl = std::chrono::seconds(60);
  o.signing_keys = {{"k1", secret}, {"old", secret_old}};  // the first signs
  return o;
}

std::optional<std::string> load(const std::string& k) {
  if (k.rfind("none", 0) == 0) return std::nullopt;
  return "row " + k;
}

// The item the cache holds for text, after a get stored it.
StoreItem stored(Cache& cache, InMemoryStore& store, const std::string& text) {
  cache.get(text);
  StoreItem item;
  REQUIRE(store.get(cache.cache_key(text), item) == StoreStatus::ok);
  return item;
}

// The near log's base key for the options, as the spec names it:
// encode("near_log:" + name + ":" + key_prefix, 234).
std::string log_base(const Options& o) {
  return encode_key("near_log:" + o.name + ":" + o.key_prefix, 234);
}

// The record in the slot of the log's current sequence number.
std::string last_record(InMemoryStore& store, const std::string& base) {
  StoreItem counter, slot;
  REQUIRE(store.get(base + "%c", counter) == StoreStatus::ok);
  std::uint64_t seq = std::stoull(counter.value);
  REQUIRE(store.get(base + "%s" + std::to_string(seq % 1024), slot) == StoreStatus::ok);
  CHECK(slot.flags == 0);
  return slot.value;
}

// What the spec says a signed record of seq and key under the signing key holds.
std::string expected_record(const std::string& secret, const std::string& base,
                            const std::string& seq_and_key) {
  return seq_and_key + " k1 " +
         lower_hex(hmac_sha256(mac_key(secret), record_message(base, seq_and_key)));
}

}  // namespace

TEST_CASE("wire format: a signed value's tag is the HMAC the spec describes, by OpenSSL",
          "[signing][wire-format]") {
  for (const std::string* secret : {&secret_short, &secret_long}) {
    // Plain, escaped and grouped keys; a value and a negative entry.
    std::vector<Options> variants(2, signing(*secret));
    variants[1].group = "everyone";  // the key gets %g<generation>
    for (const Options& v : variants) {
      auto store = std::make_shared<InMemoryStore>();
      Cache cache(store, load, v);
      for (std::string text : {"42", "with space\n%", "none_7"}) {
        INFO("key text: " << text << ", group: " << v.group);
        StoreItem item = stored(cache, *store, text);
        std::string mkey = cache.cache_key(text);
        std::string_view bytes = item.value;
        bool negative = text.rfind("none", 0) == 0;
        // Flags: magic 0xCA, version 2, codec 1 (string), bit 13 for a negative entry.
        CHECK(item.flags == (negative ? 0xCA002201u : 0xCA000201u));
        REQUIRE(bytes.size() >= 48 + 2);
        CHECK(static_cast<unsigned char>(bytes[0]) == 0xCA);
        CHECK(bytes[1] == 2);
        REQUIRE(bytes[2] == 2);  // key id length n
        CHECK(bytes[3] == 0);
        CHECK(bytes.substr(16, 2) == "k1");
        CHECK(bytes.substr(50) == (negative ? "" : "row " + text));
        std::string tag(bytes.substr(18, 32));
        CHECK(tag == hmac_sha256(mac_key(*secret), value_message(mkey, item.flags, bytes)));
        // Not the other orders: key before flags, or the secret itself as the key.
        std::string swapped = value_message(mkey, item.flags, bytes);
        swapped = swapped.substr(0, 1) + std::string(mkey) + swapped.substr(1, 4) +
                  swapped.substr(5 + mkey.size());
        CHECK(tag != hmac_sha256(mac_key(*secret), swapped));
        CHECK(tag != hmac_sha256(*secret, value_message(mkey, item.flags, bytes)));
      }
    }
  }
}

TEST_CASE("wire format: a signed near-log record's tag is the HMAC the spec describes, by OpenSSL",
          "[signing][wire-format][near]") {
  Options o = signing(secret_long);
  o.near_ttl = std::chrono::seconds(60);
  o.near_sync = std::chrono::hours(1);  // no log read in between
  std::string base = log_base(o);

  SECTION("records a cache appended: an invalidation, a put") {
    auto store = std::make_shared<InMemoryStore>();
    Cache cache(store, load, o);
    std::string mkey = cache.cache_key("with space");
    REQUIRE(cache.invalidate("with space"));
    std::string record = last_record(*store, base);
    std::string seq = record.substr(0, record.find(' '));
    CHECK(record == expected_record(secret_long, base, seq + " " + mkey));

    REQUIRE(cache.put("42", "forty-two"));
    record = last_record(*store, base);
    seq = record.substr(0, record.find(' '));
    CHECK(record == expected_record(secret_long, base, seq + " " + cache.cache_key("42")));
  }

  SECTION("a group bump is the record `*`") {
    o.group = "everyone";
    auto store = std::make_shared<InMemoryStore>();
    Cache cache(store, load, o);
    cache.get("42");
    REQUIRE(cache.invalidate_all());
    std::string record = last_record(*store, base);
    std::string seq = record.substr(0, record.find(' '));
    CHECK(record == expected_record(secret_long, base, seq + " *"));
  }

  SECTION("NearLog::record, the writer's own") {
    detail::NearLog log(std::make_shared<InMemoryStore>(), base, 1024,
                        std::make_shared<ManualClock>(), o.signing_keys);
    CHECK(log.record(1767225600000123, "spec_42") ==
          expected_record(secret_long, base, "1767225600000123 spec_42"));
  }
}
