// cacheaside: the stored-value format (standard library only). Specified in
// docs/wire-format.md; a change here is a versioned change there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cacheaside {
namespace envelope {

// memcached flags (32 bit):
//   bits  0-7   codec id
//   bits  8-11  envelope version (1)
//   bit  12     compressed (not produced yet; read as unknown)
//   bit  13     negative entry ("does not exist")
//   bit  14     lease marker
//   bits 15-23  reserved, must be 0
//   bits 24-31  magic 0xCA
// flags == 0 is a raw value (Format::raw, or another client's plain bytes).
inline constexpr std::uint32_t magic_flags = 0xCAu << 24;
inline constexpr std::uint32_t magic_mask = 0xFFu << 24;
inline constexpr std::uint32_t version = 1;
inline constexpr std::uint32_t version_shift = 8;
inline constexpr std::uint32_t version_mask = 0xFu << version_shift;
inline constexpr std::uint32_t compressed_bit = 1u << 12;
inline constexpr std::uint32_t negative_bit = 1u << 13;
inline constexpr std::uint32_t lease_bit = 1u << 14;
inline constexpr std::uint32_t reserved_mask = 0x1FFu << 15;

// Payload header, 16 bytes, little-endian:
//   0     magic 0xCA
//   1     header version (1)
//   2-3   reserved (0)
//   4-11  logical expiry, unix time in milliseconds (int64)
//   12-15 load duration in microseconds (uint32, saturating)
inline constexpr std::size_t header_size = 16;
inline constexpr unsigned char header_magic = 0xCA;

enum class Kind { value, negative, lease, raw, unknown };

/// One decoded stored item; `payload` points into the bytes given to decode().
struct Entry {
  Kind kind = Kind::unknown;   ///< what the item is
  std::uint8_t codec = 0;      ///< the serializer's codec id (value, negative)
  std::int64_t expiry_ms = 0;  ///< logical expiry, unix ms (value, negative)
  std::uint32_t load_us = 0;   ///< how long the load took, µs (value, negative)
  std::string_view payload;    ///< the serializer's bytes (value)
};

inline std::uint32_t value_flags(std::uint8_t codec) {
  return magic_flags | (version << version_shift) | codec;
}
inline std::uint32_t negative_flags(std::uint8_t codec) {
  return value_flags(codec) | negative_bit;
}
inline std::uint32_t lease_flags() { return magic_flags | (version << version_shift) | lease_bit; }

/// Writes header + payload into out (replacing its content).
inline void encode(std::string& out, std::int64_t expiry_ms, std::uint32_t load_us,
                   std::string_view payload) {
  out.resize(header_size + payload.size());
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = header_magic;
  p[1] = 1;
  p[2] = 0;
  p[3] = 0;
  auto e = static_cast<std::uint64_t>(expiry_ms);
  for (int i = 0; i < 8; ++i) p[4 + i] = static_cast<unsigned char>(e >> (8 * i));
  for (int i = 0; i < 4; ++i) p[12 + i] = static_cast<unsigned char>(load_us >> (8 * i));
  if (!payload.empty()) out.replace(header_size, payload.size(), payload.data(), payload.size());
}

/// Reads an item. Anything not understood (foreign flags, newer version,
/// compression, truncated header) gives Kind::unknown: the caller treats it as
/// a miss.
inline Entry decode(std::string_view bytes, std::uint32_t flags) {
  Entry e;
  if (flags == 0) {
    e.kind = Kind::raw;
    e.payload = bytes;
    return e;
  }
  if ((flags & magic_mask) != magic_flags || (flags & reserved_mask) != 0 ||
      ((flags & version_mask) >> version_shift) != version || (flags & compressed_bit) != 0) {
    return e;
  }
  if (flags & lease_bit) {
    e.kind = Kind::lease;
    e.payload = bytes;
    return e;
  }
  if (bytes.size() < header_size) return e;
  auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (p[0] != header_magic || p[1] != 1) return e;
  std::uint64_t exp = 0;
  for (int i = 0; i < 8; ++i) exp |= std::uint64_t{p[4 + i]} << (8 * i);
  std::uint32_t load = 0;
  for (int i = 0; i < 4; ++i) load |= std::uint32_t{p[12 + i]} << (8 * i);
  e.codec = static_cast<std::uint8_t>(flags & 0xFF);
  e.expiry_ms = static_cast<std::int64_t>(exp);
  e.load_us = load;
  e.payload = bytes.substr(header_size);
  e.kind = (flags & negative_bit) ? Kind::negative : Kind::value;
  return e;
}

}  // namespace envelope
}  // namespace cacheaside
