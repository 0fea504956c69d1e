// The meta protocol's reply parser on any line: never reads past it, and what it
// accepts is what the protocol allows (a value size within the limit, W/Z/X bare).
#include <cacheaside/detail/meta/reply.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = cacheaside::detail;
  // A copy the exact size of the line: ASan sees any read past it.
  std::string line(reinterpret_cast<const char*>(data), size);
  auto eol = line.find("\r\n");
  if (eol != std::string::npos) line.resize(eol);
  std::string exact(line);
  d::MetaReply r;
  bool ok = d::parse_meta_reply(exact, r);
  if (!ok) return 0;
  for (unsigned char c : exact) FUZZ_CHECK(c >= 0x20 && c != 0x7f);
  if (r.code == d::MetaCode::va) FUZZ_CHECK(r.size <= d::max_meta_value);
  if (r.code == d::MetaCode::va || r.code == d::MetaCode::hd || r.code == d::MetaCode::en ||
      r.code == d::MetaCode::nf || r.code == d::MetaCode::ns || r.code == d::MetaCode::ex ||
      r.code == d::MetaCode::mn)
    FUZZ_CHECK(exact.size() >= 2);
  if (!r.message.empty()) {
    FUZZ_CHECK(r.message.data() >= exact.data());
    FUZZ_CHECK(r.message.data() + r.message.size() <= exact.data() + exact.size());
  }
  return 0;
}
