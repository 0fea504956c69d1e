// The envelope decoder and the signed values' verifier on any bytes and flags (the
// first 4 input bytes): never reads outside the bytes; what it accepts as a value
// re-encodes to the same bytes; what the encoder writes decodes back; no signed
// entry made of the input passes the verifier, and a signed one it wrote passes
// until any one byte of it changes.
#include <cacheaside/detail/integrity/signer.hpp>
#include <cacheaside/envelope.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"

namespace {
namespace env = cacheaside::envelope;

const cacheaside::detail::Signer& signer() {
  static const cacheaside::detail::Signer s(
      {{"k1", std::string(32, 's')}, {"k2", std::string(40, 't')}});
  return s;
}

void check_decoded(const std::string& bytes, std::uint32_t flags) {
  env::Entry e = env::decode(bytes, flags);
  if (!e.payload.empty()) {
    FUZZ_CHECK(e.payload.data() >= bytes.data());
    FUZZ_CHECK(e.payload.data() + e.payload.size() <= bytes.data() + bytes.size());
  }
  if (e.kind != env::Kind::value && e.kind != env::Kind::negative) return;
  FUZZ_CHECK(bytes.size() >= env::header_size);
  std::string again;
  if (e.is_signed) {
    FUZZ_CHECK(e.key_id.size() >= 1 && e.key_id.size() <= env::max_key_id);
    env::encode_signed(again, e.expiry_ms, e.load_us, e.key_id, e.payload);
    again.replace(env::header_size + e.key_id.size(), env::tag_size, e.tag);
    FUZZ_CHECK(again == bytes);
    // A forger would have to guess the tag.
    FUZZ_CHECK(signer().verify("key", flags, bytes, e) != nullptr);
  } else {
    env::encode(again, e.expiry_ms, e.load_us, e.payload);
    FUZZ_CHECK(again.size() == bytes.size());
    FUZZ_CHECK(again.compare(0, 2, bytes, 0, 2) == 0);
    FUZZ_CHECK(again.compare(4, std::string::npos, bytes, 4, std::string::npos) == 0);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  std::uint32_t flags = std::uint32_t{data[0]} | std::uint32_t{data[1]} << 8 |
                        std::uint32_t{data[2]} << 16 | std::uint32_t{data[3]} << 24;
  // Sometimes well-formed flags, so the header parser is reached.
  if (data[0] & 1) {
    bool is_signed = data[0] & 4;
    flags = (data[0] & 2) ? env::negative_flags(data[1], is_signed)
                          : env::value_flags(data[1], is_signed);
  }
  std::string bytes(reinterpret_cast<const char*>(data + 4), size - 4);
  check_decoded(bytes, flags);

  std::string out;
  env::encode(out, static_cast<std::int64_t>(flags) * 1000, flags, bytes);
  env::Entry back = env::decode(out, env::value_flags(7));
  FUZZ_CHECK(back.kind == env::Kind::value);
  FUZZ_CHECK(back.payload == bytes);
  FUZZ_CHECK(back.load_us == flags);
  FUZZ_CHECK(back.expiry_ms == static_cast<std::int64_t>(flags) * 1000);

  // Signed by us: genuine under its key and flags; one byte flipped (chosen by the
  // input), refused or no longer an entry.
  std::uint32_t sflags = env::value_flags(7, true);
  env::encode_signed(out, static_cast<std::int64_t>(flags), flags, "k1", bytes);
  signer().sign("key", sflags, out);
  back = env::decode(out, sflags);
  FUZZ_CHECK(back.kind == env::Kind::value && back.is_signed && back.payload == bytes);
  FUZZ_CHECK(signer().verify("key", sflags, out, back) == nullptr);
  FUZZ_CHECK(signer().verify("kez", sflags, out, back) != nullptr);
  std::size_t at = flags % out.size();
  out[at] = static_cast<char>(out[at] ^ (data[1] | 1));
  back = env::decode(out, sflags);
  FUZZ_CHECK(back.kind == env::Kind::unknown || signer().verify("key", sflags, out, back));
  return 0;
}
