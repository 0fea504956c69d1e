// The key encoder: safe (no space, control byte or DEL; within the limit, never
// empty), kept as it is when already safe, and injective. The input is split in
// two texts at its first byte's position; the limit comes from its second byte.
#include <cacheaside/key.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"

namespace {

void check_safe(const std::string& k, std::size_t limit) {
  FUZZ_CHECK(!k.empty());
  FUZZ_CHECK(k.size() <= limit);
  for (unsigned char c : k) FUZZ_CHECK(c > 0x20 && c < 0x7f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  std::size_t cut = rest.empty() ? 0 : data[0] % (rest.size() + 1);
  // 70..250: long enough for the digest form (%H + 64 hex digits), up to memcached's max.
  std::size_t limit = 70 + data[1] % (cacheaside::max_key_length - 70 + 1);
  std::string a(rest.substr(0, cut)), b(rest.substr(cut));
  std::string ka = cacheaside::encode_key(a, limit), kb = cacheaside::encode_key(b, limit);
  check_safe(ka, limit);
  check_safe(kb, limit);
  if (a != b) FUZZ_CHECK(ka != kb);
  bool plain = !a.empty() && a.size() <= limit;
  for (unsigned char c : a) plain = plain && cacheaside::detail::plain_key_byte(c);
  if (plain) FUZZ_CHECK(ka == a);
  return 0;
}
