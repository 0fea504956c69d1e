// The envelope decoder on any bytes and flags (the first 4 input bytes): never
// reads outside the bytes; what it accepts as a value re-encodes to the same
// bytes; what the encoder writes decodes back.
#include <cacheaside/envelope.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace env = cacheaside::envelope;
  if (size < 4) return 0;
  std::uint32_t flags = std::uint32_t{data[0]} | std::uint32_t{data[1]} << 8 |
                        std::uint32_t{data[2]} << 16 | std::uint32_t{data[3]} << 24;
  // Sometimes well-formed flags, so the header parser is reached.
  if (data[0] & 1) flags = (data[0] & 2) ? env::negative_flags(data[1]) : env::value_flags(data[1]);
  std::string bytes(reinterpret_cast<const char*>(data + 4), size - 4);
  env::Entry e = env::decode(bytes, flags);
  if (!e.payload.empty()) {
    FUZZ_CHECK(e.payload.data() >= bytes.data());
    FUZZ_CHECK(e.payload.data() + e.payload.size() <= bytes.data() + bytes.size());
  }
  if (e.kind == env::Kind::value || e.kind == env::Kind::negative) {
    FUZZ_CHECK(bytes.size() >= env::header_size);
    std::string again;
    env::encode(again, e.expiry_ms, e.load_us, e.payload);
    FUZZ_CHECK(again.size() == bytes.size());
    FUZZ_CHECK(again.compare(0, 2, bytes, 0, 2) == 0);
    FUZZ_CHECK(again.compare(4, std::string::npos, bytes, 4, std::string::npos) == 0);
  }
  std::string out;
  env::encode(out, static_cast<std::int64_t>(flags) * 1000, flags, bytes);
  env::Entry back = env::decode(out, env::value_flags(7));
  FUZZ_CHECK(back.kind == env::Kind::value);
  FUZZ_CHECK(back.payload == bytes);
  FUZZ_CHECK(back.load_us == flags);
  FUZZ_CHECK(back.expiry_ms == static_cast<std::int64_t>(flags) * 1000);
  return 0;
}
