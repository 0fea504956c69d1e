#include <cacheaside/envelope.hpp>
#include <cacheaside/serializer.hpp>
#include <catch2/catch.hpp>

using namespace cacheaside;

TEST_CASE("envelope round trip", "[envelope][nostore]") {
  std::string bytes;
  envelope::encode(bytes, 1700000000123, 4567, "payload");
  auto e = envelope::decode(bytes, envelope::value_flags(codec_id::json));
  REQUIRE(e.kind == envelope::Kind::value);
  CHECK(e.codec == codec_id::json);
  CHECK(e.expiry_ms == 1700000000123);
  CHECK(e.load_us == 4567);
  CHECK(e.payload == "payload");
}

TEST_CASE("version 1 bytes written down in docs/wire-format.md decode", "[envelope][nostore]") {
  // A JSON value: flags 0xCA000102, expiry 2023-11-14T22:13:20.123Z, load 4567 us.
  const unsigned char v1[] = {0xCA, 0x01, 0x00, 0x00, 0x7B, 0x68, 0xE5, 0xCF, 0x8B,
                              0x01, 0x00, 0x00, 0xD7, 0x11, 0x00, 0x00, '4',  '2'};
  std::string bytes(reinterpret_cast<const char*>(v1), sizeof v1);
  CHECK(envelope::value_flags(codec_id::json) == 0xCA000102u);
  CHECK(envelope::negative_flags(codec_id::json) == 0xCA002102u);
  CHECK(envelope::lease_flags() == 0xCA004100u);
  auto e = envelope::decode(bytes, 0xCA000102u);
  REQUIRE(e.kind == envelope::Kind::value);
  CHECK(e.expiry_ms == 1700000000123);
  CHECK(e.load_us == 4567);
  CHECK(e.payload == "42");
  auto n = envelope::decode(bytes.substr(0, 16), 0xCA002102u);
  CHECK(n.kind == envelope::Kind::negative);
}

TEST_CASE("bytes we don't understand are unknown, not a crash", "[envelope][nostore]") {
  std::string ok;
  envelope::encode(ok, 1, 1, "x");
  CHECK(envelope::decode(ok, 1).kind == envelope::Kind::unknown);            // foreign flags
  CHECK(envelope::decode(ok, 0xCA000202u).kind == envelope::Kind::unknown);  // version 2
  CHECK(envelope::decode(ok, 0xCA001102u).kind == envelope::Kind::unknown);  // compressed
  CHECK(envelope::decode(ok, 0xCA800102u).kind == envelope::Kind::unknown);  // reserved bit
  CHECK(envelope::decode(ok.substr(0, 10), 0xCA000102u).kind == envelope::Kind::unknown);
  std::string bad = ok;
  bad[0] = 'X';
  CHECK(envelope::decode(bad, 0xCA000102u).kind == envelope::Kind::unknown);
  CHECK(envelope::decode("anything", 0).kind == envelope::Kind::raw);
}
