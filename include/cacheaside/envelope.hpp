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
//   bits  8-11  envelope version (1; 2: signed, Options::signing_keys)
//   bit  12     compressed (not produced yet; read as unknown)
//   bit  13     negative entry ("does not exist")
//   bit  14     lease marker
//   bits 15-23  reserved, must be 0
//   bits 24-31  magic 0xCA
// flags == 0 is a raw value (Format::raw, or another client's plain bytes).
inline constexpr std::uint32_t magic_flags = 0xCAu << 24;
inline constexpr std::uint32_t magic_mask = 0xFFu << 24;
inline constexpr std::uint32_t version = 1;
inline constexpr std::uint32_t signed_version = 2;
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

// Signed (version 2): the same 16 bytes with header version 2 and byte 2 the key
// id's length n (1-32), then the key id, then the 32-byte HMAC-SHA256 tag, then
// the payload. The tag covers the memcached key, the flags and every other byte
// (see docs/wire-format.md).
inline constexpr std::size_t tag_size = 32;
inline constexpr std::size_t max_key_id = 32;
inline std::size_t signed_header_size(std::size_t key_id_size) {
  return header_size + key_id_size + tag_size;
}

enum class Kind { value, negative, lease, raw, unknown };

/// One decoded stored item; `payload` points into the bytes given to decode().
struct Entry {
  Kind kind = Kind::unknown;       ///< what the item is
  std::uint8_t codec = 0;          ///< the serializer's codec id (value, negative)
  std::int64_t expiry_ms = 0;      ///< logical expiry, unix ms (value, negative)
  std::uint32_t load_us = 0;       ///< how long the load took, µs (value, negative)
  std::string_view payload;        ///< the serializer's bytes (value)
  bool is_signed = false;          ///< version 2 (value, negative): key_id and tag are set
  std::string_view key_id;         ///< the signing key's id (signed)
  std::string_view tag;            ///< the HMAC-SHA256 tag (signed)
  std::size_t payload_offset = 0;  ///< where payload starts in the bytes (value, negative)
};

inline std::uint32_t value_flags(std::uint8_t codec, bool is_signed = false) {
  return magic_flags | ((is_signed ? signed_version : version) << version_shift) | codec;
}
inline std::uint32_t negative_flags(std::uint8_t codec, bool is_signed = false) {
  return value_flags(codec, is_signed) | negative_bit;
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

/// Writes a signed header (its tag zero) + payload into out; the signer then
/// fills the tag (bytes header_size + key_id.size() onwards). key_id: 1-32 bytes.
inline void encode_signed(std::string& out, std::int64_t expiry_ms, std::uint32_t load_us,
                          std::string_view key_id, std::string_view payload) {
  encode(out, expiry_ms, load_us, {});
  out[1] = static_cast<char>(signed_version);
  out[2] = static_cast<char>(key_id.size());
  out.append(key_id.data(), key_id.size());
  out.append(tag_size, '\0');
  out.append(payload.data(), payload.size());
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
  std::uint32_t v = (flags & version_mask) >> version_shift;
  if ((flags & magic_mask) != magic_flags || (flags & reserved_mask) != 0 ||
      (v != version && v != signed_version) || (flags & compressed_bit) != 0) {
    return e;
  }
  if (flags & lease_bit) {
    if (v != version) return e;  // lease markers are not signed
    e.kind = Kind::lease;
    e.payload = bytes;
    return e;
  }
  if (bytes.size() < header_size) return e;
  auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (p[0] != header_magic || p[1] != v) return e;
  std::size_t start = header_size;
  if (v == signed_version) {
    std::size_t n = p[2];
    if (n == 0 || n > max_key_id || p[3] != 0 || bytes.size() < signed_header_size(n)) return e;
    e.is_signed = true;
    e.key_id = bytes.substr(header_size, n);
    e.tag = bytes.substr(header_size + n, tag_size);
    start = signed_header_size(n);
  }
  std::uint64_t exp = 0;
  for (int i = 0; i < 8; ++i) exp |= std::uint64_t{p[4 + i]} << (8 * i);
  std::uint32_t load = 0;
  for (int i = 0; i < 4; ++i) load |= std::uint32_t{p[12 + i]} << (8 * i);
  e.codec = static_cast<std::uint8_t>(flags & 0xFF);
  e.expiry_ms = static_cast<std::int64_t>(exp);
  e.load_us = load;
  e.payload = bytes.substr(start);
  e.payload_offset = start;
  e.kind = (flags & negative_bit) ? Kind::negative : Kind::value;
  return e;
}

}  // namespace envelope
}  // namespace cacheaside
