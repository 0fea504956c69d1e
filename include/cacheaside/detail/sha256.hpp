// SHA-256 (FIPS 180-4): shortens over-long keys without collisions, and is the
// hash of the values' HMAC (detail/integrity/hmac.hpp). On x86-64 CPUs with the SHA
// extensions (checked at run time) blocks go through them, about 8 times faster:
// a signed hit hashes its whole value.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define CACHEASIDE_SHA_NI 1
#endif

namespace cacheaside::detail {

inline constexpr std::uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/// Whether this CPU has the SHA extensions (and the SSE levels their code uses).
inline bool sha256_hardware() {
#ifdef CACHEASIDE_SHA_NI
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    bool sse = (c & (1u << 9)) && (c & (1u << 19));  // SSSE3, SSE4.1
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return sse && (b & (1u << 29));  // SHA
  }();
  return has;
#else
  return false;
#endif
}

#ifdef CACHEASIDE_SHA_NI
// One 64-byte block through the SHA extensions: the schedule four words at a time
// (sha256msg1/msg2), then two rounds per sha256rnds2 on the state kept as ABEF/CDGH.
__attribute__((target("sha,sse4.1,ssse3"))) inline void sha256_block_ni(std::uint32_t h[8],
                                                                        const std::uint8_t* p) {
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i w[16];
  for (int i = 0; i < 4; ++i)
    w[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), swap);
  for (int i = 4; i < 16; ++i) {
    __m128i t = _mm_sha256msg1_epu32(w[i - 4], w[i - 3]);
    t = _mm_add_epi32(t, _mm_alignr_epi8(w[i - 1], w[i - 2], 4));
    w[i] = _mm_sha256msg2_epu32(t, w[i - 1]);
  }
  __m128i dcba = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h));
  __m128i hgfe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4));
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
  const __m128i abef0 = abef, cdgh0 = cdgh;
  for (int i = 0; i < 16; ++i) {
    __m128i m =
        _mm_add_epi32(w[i], _mm_loadu_si128(reinterpret_cast<const __m128i*>(sha256_k + 4 * i)));
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m);
    abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m, 0x0E));
  }
  abef = _mm_add_epi32(abef, abef0);
  cdgh = _mm_add_epi32(cdgh, cdgh0);
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h + 4), _mm_alignr_epi8(dchg, feba, 8));
}
#endif

class Sha256 {
 public:
  /// hardware: use the SHA extensions when the CPU has them (false: the portable code
  /// always; the tests compare the two).
  explicit Sha256(bool hardware = true) : hardware_(hardware && sha256_hardware()) {}

  void update(std::string_view data) {
    total_ += data.size();
    const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
    std::size_t n = data.size();
    while (n > 0) {  // whole blocks are copied, not fed byte by byte (values get MACed)
      std::size_t take = std::min<std::size_t>(64 - block_len_, n);
      std::memcpy(block_ + block_len_, p, take);
      block_len_ += take;
      p += take;
      n -= take;
      if (block_len_ == 64) {
        compress();
        block_len_ = 0;
      }
    }
  }

  std::array<std::uint8_t, 32> finish() {
    std::uint64_t bits = total_ * 8;
    block_[block_len_++] = 0x80;
    if (block_len_ > 56) {
      while (block_len_ < 64) block_[block_len_++] = 0;
      compress();
      block_len_ = 0;
    }
    while (block_len_ < 56) block_[block_len_++] = 0;
    for (int i = 7; i >= 0; --i) block_[block_len_++] = static_cast<std::uint8_t>(bits >> (i * 8));
    compress();
    std::array<std::uint8_t, 32> out{};
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) out[i * 4 + j] = static_cast<std::uint8_t>(h_[i] >> (24 - j * 8));
    return out;
  }

 private:
  static std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress() {
#ifdef CACHEASIDE_SHA_NI
    if (hardware_) return sha256_block_ni(h_, block_);
#endif
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (std::uint32_t{block_[i * 4]} << 24) | (std::uint32_t{block_[i * 4 + 1]} << 16) |
             (std::uint32_t{block_[i * 4 + 2]} << 8) | std::uint32_t{block_[i * 4 + 3]};
    for (int i = 16; i < 64; ++i) {
      std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6],
                  h = h_[7];
    for (int i = 0; i < 64; ++i) {
      std::uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      std::uint32_t ch = (e & f) ^ (~e & g);
      std::uint32_t t1 = h + s1 + ch + sha256_k[i] + w[i];
      std::uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
      std::uint32_t t2 = s0 + maj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  std::uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::uint8_t block_[64] = {};
  std::size_t block_len_ = 0;
  std::uint64_t total_ = 0;
  bool hardware_;
};

/// Appends a digest to out in lower-case hex.
inline void append_hex(const std::array<std::uint8_t, 32>& digest, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  for (std::uint8_t b : digest) {
    out += hex[b >> 4];
    out += hex[b & 0xf];
  }
}

/// Lower-case hex SHA-256 of data.
inline std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  std::string out;
  out.reserve(64);
  append_hex(h.finish(), out);
  return out;
}

}  // namespace cacheaside::detail
