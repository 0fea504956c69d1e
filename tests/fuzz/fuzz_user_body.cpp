// The example service's request body validation on any bytes: never throws, and a
// body it accepts has a name and an email within the limits, UTF-8, no control
// characters; a body it refuses has a JSON answer with "detail".
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "../../examples/user_service/fastapi_errors.hpp"
#include "fuzz_check.hpp"

namespace {

bool clean(const std::string& s, std::size_t limit) {
  std::size_t chars = 0;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
    chars += (c & 0xC0) != 0x80;
  }
  return chars <= limit;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  user_service::UserBody b = user_service::parse_user_body(body);
  if (b.error.empty()) {
    FUZZ_CHECK(clean(b.name, user_service::max_name_chars));
    FUZZ_CHECK(clean(b.email, user_service::max_email_chars));
    // Valid UTF-8: serializing it as JSON does not throw.
    nlohmann::json j = {{"name", b.name}, {"email", b.email}};
    (void)j.dump();
  } else {
    nlohmann::json e = nlohmann::json::parse(b.error);
    FUZZ_CHECK(e.contains("detail"));
  }
  return 0;
}
