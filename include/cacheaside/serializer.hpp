// cacheaside: serializer requirements and StringSerializer (standard library only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cacheaside {

/// A Serializer for `CacheAside<Key, Value, Serializer>` is a default-constructible
/// type with
///
///     static constexpr std::uint8_t codec = N;         // stored in the memcached flags
///     std::string serialize(const Value&) const;       // may throw: the value is not cached
///     Value deserialize(std::string_view bytes) const; // throws on bytes it can't read
///
/// Codec ids 1-63 are reserved for cacheaside; use 64-255 for your own serializers.
/// A value stored with another codec id is treated as a miss (and replaced).
namespace codec_id {
inline constexpr std::uint8_t string = 1;  ///< StringSerializer
inline constexpr std::uint8_t json = 2;    ///< JsonSerializer
inline constexpr std::uint8_t cbor = 3;    ///< CborSerializer
}  // namespace codec_id

/// Stores `std::string` values byte for byte.
struct StringSerializer {
  /// Stored in the envelope.
  static constexpr std::uint8_t codec = codec_id::string;
  /// value, as is.
  std::string serialize(const std::string& value) const { return value; }
  /// bytes, as they are.
  std::string deserialize(std::string_view bytes) const { return std::string(bytes); }
};

}  // namespace cacheaside
