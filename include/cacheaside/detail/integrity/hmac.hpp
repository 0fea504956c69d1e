// HMAC-SHA256 (RFC 2104) over detail::Sha256. The padded key's hash states are
// computed once per key, so a MAC costs the message's hash and one block more.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "../sha256.hpp"

namespace cacheaside::detail {

using Digest = std::array<std::uint8_t, 32>;

inline std::string_view bytes_of(const Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

class HmacKey {
 public:
  explicit HmacKey(std::string_view secret) {
    std::uint8_t k[64] = {};
    if (secret.size() > sizeof k) {
      Sha256 h;
      h.update(secret);
      Digest d = h.finish();
      std::memcpy(k, d.data(), d.size());
    } else if (!secret.empty()) {
      std::memcpy(k, secret.data(), secret.size());
    }
    std::uint8_t pad[64];
    for (std::size_t i = 0; i < 64; ++i) pad[i] = k[i] ^ 0x36;
    inner_.update({reinterpret_cast<const char*>(pad), sizeof pad});
    for (std::size_t i = 0; i < 64; ++i) pad[i] = k[i] ^ 0x5c;
    outer_.update({reinterpret_cast<const char*>(pad), sizeof pad});
    wipe(k, sizeof k);
    wipe(pad, sizeof pad);
  }

  /// A MAC being computed: update() with the message, then finish().
  class Mac {
   public:
    void update(std::string_view data) { inner_.update(data); }
    Digest finish() {
      Digest in = inner_.finish();
      outer_.update(bytes_of(in));
      return outer_.finish();
    }

   private:
    friend class HmacKey;
    Mac(const Sha256& inner, const Sha256& outer) : inner_(inner), outer_(outer) {}
    Sha256 inner_, outer_;
  };

  Mac begin() const { return Mac(inner_, outer_); }
  Digest mac(std::string_view message) const {
    Mac m = begin();
    m.update(message);
    return m.finish();
  }

 private:
  static void wipe(std::uint8_t* p, std::size_t n) {
    volatile std::uint8_t* v = p;  // not optimized away: the key leaves no copy here
    for (std::size_t i = 0; i < n; ++i) v[i] = 0;
  }

  Sha256 inner_, outer_;
};

/// Equal bytes, in a time that depends on the length only (tags are compared
/// with it, so a forger learns nothing from how long a refusal took).
inline bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  return diff == 0;
}

}  // namespace cacheaside::detail
