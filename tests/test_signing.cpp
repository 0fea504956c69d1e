// Signed values (Options::signing_keys): HMAC-SHA256 against RFC 4231, the signed
// envelope, and a cache over a real memcached refusing copied, forged, unsigned and
// tampered bytes (each loaded once from the source and overwritten).
#include <cacheaside/detail/integrity/signer.hpp>
#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "support/common.hpp"
#include "support/raw_client.hpp"
#include "support/user.hpp"

using namespace cacheaside;
using namespace cacheaside_test;

namespace {

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::string hmac_hex(const std::string& key, const std::string& message) {
  return hex(detail::bytes_of(detail::HmacKey(key).mac(message)));
}

const std::string secret_a(32, 'a');
const std::string secret_b = "0123456789abcdef0123456789abcdef-b";

Options signing(std::vector<SigningKey> keys) {
  Options o;
  o.name = "signed";
  o.key_prefix = "sig_";
  o.ttl = std::chrono::seconds(60);
  o.signing_keys = std::move(keys);
  return o;
}

// A cache of users whose loader counts its calls per id (negative ids do not exist),
// and the events' reasons for refused values.
struct SignedUsers {
  SignedUsers(std::shared_ptr<Store> store, Options o) : cache(store, loader(), with_hook(o)) {}

  TestCache<int, User, JsonSerializer<User>>::Loader loader() {
    return [this](const int& id) -> std::optional<User> {
      std::lock_guard<std::mutex> g(mu);
      ++loads[id];
      if (id < 0) return std::nullopt;
      return make_user(id);
    };
  }
  Options with_hook(Options o) {
    o.on_event = [this](const Event& e) {
      if (e.type != EventType::integrity_failure) return;
      std::lock_guard<std::mutex> g(mu);
      refused.push_back(std::string(e.reason));
    };
    return o;
  }
  int loaded(int id) {
    std::lock_guard<std::mutex> g(mu);
    return loads[id];
  }
  std::string last_refusal() {
    std::lock_guard<std::mutex> g(mu);
    return refused.empty() ? "" : refused.back();
  }

  std::mutex mu;
  std::map<int, int> loads;
  std::vector<std::string> refused;
  TestCache<int, User, JsonSerializer<User>> cache;
};

}  // namespace

TEST_CASE("HMAC-SHA256 gives RFC 4231's tags; SHA-256 the same digest fed in any pieces",
          "[signing][nostore]") {
  CHECK(hmac_hex(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hmac_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hmac_hex(std::string(131, '\xaa'),
                 "Test Using Larger Than Block-Size Key - Hash Key First") ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  std::string million(1000000, 'a');
  CHECK(detail::sha256_hex(million) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  detail::Sha256 pieces;
  for (std::size_t at = 0, n = 1; at < million.size(); at += n, n = n % 97 + 1)
    pieces.update(std::string_view(million).substr(at, n));
  auto d = pieces.finish();
  CHECK(hex({reinterpret_cast<const char*>(d.data()), d.size()}) == detail::sha256_hex(million));

  // The SHA extensions' path (where the CPU has them) and the portable one agree.
  INFO("SHA extensions: " << detail::sha256_hardware());
  std::string bytes;
  for (std::size_t n = 0; n < 300; ++n) {
    detail::Sha256 hw(true), sw(false);
    hw.update(bytes);
    sw.update(bytes);
    REQUIRE(hw.finish() == sw.finish());
    bytes += static_cast<char>(n * 131 + 7);
  }
  detail::Sha256 portable(false);
  portable.update(million);
  auto p = portable.finish();
  CHECK(hex({reinterpret_cast<const char*>(p.data()), p.size()}) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE(
    "signed envelope: verified under its key and flags; any byte changed, another key, "
    "other flags or an unknown key id refused",
    "[signing][nostore]") {
  detail::Signer signer({{"k1", secret_a}});
  std::uint32_t flags = envelope::value_flags(codec_id::json, true);
  CHECK(flags == 0xCA000202u);
  std::string bytes;
  envelope::encode_signed(bytes, 1700000000123, 4567, "k1", "{\"id\":5}");
  signer.sign("sig_5", flags, bytes);
  REQUIRE(bytes.size() == envelope::signed_header_size(2) + 8);
  auto e = envelope::decode(bytes, flags);
  REQUIRE(e.kind == envelope::Kind::value);
  CHECK(e.is_signed);
  CHECK(e.key_id == "k1");
  CHECK(e.expiry_ms == 1700000000123);
  CHECK(e.load_us == 4567);
  CHECK(e.payload == "{\"id\":5}");
  CHECK(signer.verify("sig_5", flags, bytes, e) == nullptr);
  CHECK(std::string(signer.verify("sig_7", flags, bytes, e)) == "wrong tag");
  CHECK(std::string(signer.verify("sig_5", flags | envelope::negative_bit, bytes, e)) ==
        "wrong tag");

  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string changed = bytes;
    changed[i] = static_cast<char>(changed[i] ^ 0x01);
    auto c = envelope::decode(changed, flags);
    INFO("byte " << i);
    CHECK((c.kind == envelope::Kind::unknown || signer.verify("sig_5", flags, changed, c)));
  }
  detail::Signer other({{"k2", secret_b}});
  CHECK(std::string(other.verify("sig_5", flags, bytes, e)) == "unknown signing key id");
  detail::Signer same_id_other_secret({{"k1", secret_b}});
  CHECK(std::string(same_id_other_secret.verify("sig_5", flags, bytes, e)) == "wrong tag");
  detail::Signer rotated({{"k2", secret_b}, {"k1", secret_a}});
  CHECK(rotated.verify("sig_5", flags, bytes, e) == nullptr);
  CHECK(envelope::decode(bytes.substr(0, envelope::signed_header_size(2) - 1), flags).kind ==
        envelope::Kind::unknown);
}

TEST_CASE("signing keys that cannot be used are refused when the cache is made",
          "[signing][nostore]") {
  auto store = std::make_shared<InMemoryStore>();
  auto load = [](const int& id) -> std::optional<User> { return make_user(id); };
  auto make = [&](std::vector<SigningKey> keys, Format f = Format::envelope) {
    Options o = signing(std::move(keys));
    o.format = f;
    CacheAside<int, User, JsonSerializer<User>> c(store, load, o);
  };
  CHECK_NOTHROW(make({{"k1", secret_a}, {"k2", secret_b}}));
  CHECK_THROWS_WITH(make({{"k1", "short"}}), Catch::Contains("at least 32 bytes"));
  CHECK_THROWS_WITH(make({{"", secret_a}}), Catch::Contains("printable"));
  CHECK_THROWS_WITH(make({{"k 1", secret_a}}), Catch::Contains("printable"));
  CHECK_THROWS_WITH(make({{std::string(33, 'k'), secret_a}}), Catch::Contains("printable"));
  CHECK_THROWS_WITH(make({{"k1", secret_a}, {"k1", secret_b}}), Catch::Contains("twice"));
  CHECK_THROWS_WITH(make({{"k1", secret_a}}, Format::raw), Catch::Contains("Format::envelope"));
}

TEST_CASE(
    "signed values: bytes copied from another key, a hand-written envelope, a plain value "
    "and tampered bytes are refused, loaded once from the source and overwritten",
    "[signing]") {
  Server srv;
  RawClient raw(srv.process.port());
  SignedUsers u(srv.store, signing({{"k1", secret_a}}));
  auto& cache = u.cache;
  CHECK(cache.get(7) == make_user(7));
  CHECK(cache.get(5) == make_user(5));
  CHECK(cache.get(-1) == std::nullopt);
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 1);
  auto item7 = raw.get("sig_7");
  REQUIRE(item7);
  CHECK(item7->flags == 0xCA000202u);

  // Copying user 7's bytes to user 5: refused, loaded, overwritten.
  REQUIRE(raw.set("sig_5", item7->value, item7->flags));
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 2);
  CHECK(u.last_refusal() == "wrong tag");
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 2);
  CHECK(raw.get("sig_5")->value != item7->value);

  // A version 1 envelope written by hand, as docs/wire-format.md describes it.
  std::string forged;
  envelope::encode(forged, 4102444800000, 0, nlohmann::json(make_user(7)).dump());
  REQUIRE(raw.set("sig_5", forged, envelope::value_flags(codec_id::json)));
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 3);
  CHECK(u.last_refusal() == "unsigned value");

  // Another client's plain JSON (flags 0).
  REQUIRE(raw.set("sig_5", nlohmann::json(make_user(7)).dump(), 0));
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 4);
  CHECK(u.last_refusal() == "unsigned value (flags 0)");

  // One payload byte changed ("user5" becomes "user7").
  auto item5 = raw.get("sig_5");
  REQUIRE(item5);
  std::string tampered = item5->value;
  auto at = tampered.find("user5");
  REQUIRE(at != std::string::npos);
  tampered[at + 4] = '7';
  REQUIRE(raw.set("sig_5", tampered, item5->flags));
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 5);
  CHECK(u.last_refusal() == "wrong tag");

  // A negative entry copied over a user that exists.
  auto none = raw.get("sig_-1");
  REQUIRE(none);
  CHECK(none->flags == 0xCA002202u);
  REQUIRE(raw.set("sig_5", none->value, none->flags));
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 6);

  // An unknown key id (another deployment's key).
  SignedUsers stranger(srv.store, signing({{"k9", secret_b}}));
  CHECK(stranger.cache.get(5) == make_user(5));  // refused, loaded, stored under k9
  CHECK(stranger.last_refusal() == "unknown signing key id");
  CHECK(cache.get(5) == make_user(5));
  CHECK(u.last_refusal() == "unknown signing key id");

  CHECK(cache.stats().integrity_failures == 6);
  CHECK(cache.stats().decode_errors == 0);
  CHECK(u.loaded(7) == 1);
  CHECK(u.loaded(-1) == 1);
}

TEST_CASE(
    "signing keys rotate: the new key first reads the old key's values; an unsigned cache "
    "does not serve signed values, and a signing one never serves unsigned ones",
    "[signing]") {
  Server srv;
  SignedUsers old_key(srv.store, signing({{"k1", secret_a}}));
  SignedUsers rotated(srv.store, signing({{"k2", secret_b}, {"k1", secret_a}}));
  Options plain_options = signing({});
  SignedUsers plain(srv.store, plain_options);

  CHECK(old_key.cache.get(1) == make_user(1));
  CHECK(rotated.cache.get(1) == make_user(1));  // k1's value: a hit
  CHECK(rotated.loaded(1) == 0);
  CHECK(rotated.cache.invalidate(1));
  CHECK(rotated.cache.get(1) == make_user(1));  // stored under k2
  CHECK(rotated.loaded(1) == 1);
  CHECK(old_key.cache.get(1) == make_user(1));  // k2 unknown there: refused, loaded
  CHECK(old_key.last_refusal() == "unknown signing key id");

  CHECK(plain.cache.get(1) == make_user(1));  // a signed value: unreadable, loaded
  CHECK(plain.loaded(1) == 1);
  CHECK(plain.cache.stats().decode_errors == 1);
  CHECK(plain.cache.get(1) == make_user(1));  // its own unsigned value
  CHECK(plain.loaded(1) == 1);
  CHECK(rotated.cache.get(1) == make_user(1));  // never serves it
  CHECK(rotated.last_refusal() == "unsigned value");
  CHECK(rotated.loaded(1) == 2);
}

// Two signing caches with near caches over one memcached (a writes, b reads near),
// their log read only when a test says so; the loader answers "v<version>".
struct SignedNearPair {
  Server srv;
  RawClient raw{srv.process.port()};
  std::atomic<int> version{0};
  Options o = options();
  TestCache<int, User, JsonSerializer<User>> a{srv.store, loader(), o}, b{srv.store, loader(), o};

  static Options options() {
    Options o = signing({{"k1", secret_a}});
    o.near_ttl = std::chrono::seconds(60);
    o.near_sync = std::chrono::seconds(60);  // read only when the test says so
    return o;
  }
  std::function<std::optional<User>(const int&)> loader() {
    return [this](const int& id) -> std::optional<User> {
      User u = make_user(id);
      u.name = "v" + std::to_string(version.load());
      return u;
    };
  }
  // The near log's base key.
  std::string base() const {
    return encode_key("near_log:" + o.name + ":" + o.key_prefix, max_key_length - 16);
  }
};

TEST_CASE(
    "signed near log: a slot rewritten to name another key is not taken; the near cache is "
    "dropped, never served stale",
    "[signing]") {
  SignedNearPair p;
  auto& raw = p.raw;
  auto &a = p.a, &b = p.b;
  auto& version = p.version;
  CHECK(b.get(1)->name == "v0");
  CHECK(b.get(1)->name == "v0");  // kept near
  CHECK(b.usage().near == 1);

  version = 1;
  CHECK(a.invalidate(1));
  std::string base = p.base();
  auto counter = raw.get(base + "%c");
  REQUIRE(counter);
  std::uint64_t seq = std::stoull(counter->value);
  std::string slot = base + "%s" + std::to_string(seq % 1024);
  auto record = raw.get(slot);
  REQUIRE(record);
  CHECK(record->value.rfind(std::to_string(seq) + " sig_1 k1 ", 0) == 0);
  // The attacker's record: the same number, another key, no tag.
  REQUIRE(raw.set(slot, std::to_string(seq) + " sig_2", 0));

  b.sync_near();  // the record does not verify: missing, waited for once
  b.sync_near();  // still missing: a gap, everything near dropped
  CHECK(b.stats().near_log_gaps == 1);
  CHECK(b.get(1)->name == "v1");
}

TEST_CASE(
    "signed near log: a counter set back after a writer's increment does not hide the "
    "invalidation; a counter that stays short of a record found past it is a gap",
    "[signing]") {
  SignedNearPair p;
  auto& raw = p.raw;
  auto &a = p.a, &b = p.b;
  auto& version = p.version;
  const std::string counter = p.base() + "%c";
  // Right after a writer's increment, the attacker sets the counter back by one.
  auto invalidate_then_set_back = [&](int id) {
    REQUIRE(a.invalidate(id));
    auto c = raw.get(counter);
    REQUIRE(c);
    REQUIRE(raw.set(counter, std::to_string(std::stoull(c->value) - 1), 0));
  };
  for (int id : {1, 2, 3}) {
    CHECK(b.get(id)->name == "v0");
    CHECK(b.get(id)->name == "v0");  // read back from memcached: kept near
  }
  CHECK(b.usage().near == 3);

  version = 1;
  invalidate_then_set_back(1);
  b.sync_near();  // "nothing new", but the slot past the counter holds user 1's record
  CHECK(b.get(1)->name == "v1");
  CHECK(b.stats().near_log_gaps == 0);

  // The next writer gets the same number and reuses the slot: its record is read too.
  REQUIRE(a.invalidate(2));
  b.sync_near();
  CHECK(b.get(2)->name == "v1");
  CHECK(b.stats().near_log_gaps == 0);

  // Set back and left there: the record past it is taken at once, and the next read,
  // finding the counter still short of it, drops everything (a writer may have
  // reused a slot unseen).
  invalidate_then_set_back(3);
  b.sync_near();
  CHECK(b.get(3)->name == "v1");
  b.sync_near();
  CHECK(b.stats().near_log_gaps == 1);
  CHECK(b.usage().near == 0);
}

TEST_CASE(
    "signed values: a genuine value replayed under its own key after its logical expiry is "
    "not served; the loader is called once",
    "[signing]") {
  Server srv;
  RawClient raw(srv.process.port());
  auto clock = std::make_shared<ManualClock>();
  Options o = signing({{"k1", secret_a}});
  o.clock = clock;
  o.ttl_jitter = 0;
  SignedUsers u(srv.store, o);
  CHECK(u.cache.get(5) == make_user(5));
  auto old = raw.get("sig_5");  // what an attacker with access to memcached keeps
  REQUIRE(old);
  clock->advance(std::chrono::seconds(61));           // its expiry, inside the tag, has passed
  REQUIRE(raw.set("sig_5", old->value, old->flags));  // written back, memcached TTL 0
  CHECK(u.cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 2);  // not served: loaded once and stored anew
  CHECK(u.cache.get(5) == make_user(5));
  CHECK(u.loaded(5) == 2);
  CHECK(raw.get("sig_5")->value != old->value);
}
