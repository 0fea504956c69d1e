// cacheaside: JsonSerializer<T> and CborSerializer<T>.
// Needs nlohmann_json (Debian: nlohmann-json3-dev); link cacheaside::json.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "serializer.hpp"

namespace cacheaside {

/// Stores T as JSON text through nlohmann's to_json/from_json (found by ADL, or
/// an adl_serializer specialization). Strings must be valid UTF-8: a value
/// whose dump throws is returned to the caller but not cached.
template <class T>
struct JsonSerializer {
  /// Stored in the envelope: values of another codec are never parsed as JSON.
  static constexpr std::uint8_t codec = codec_id::json;
  /// value as compact JSON text; throws nlohmann::json::exception on invalid UTF-8.
  std::string serialize(const T& value) const { return nlohmann::json(value).dump(); }
  /// Parses bytes back into a T; throws on text that is not a T.
  T deserialize(std::string_view bytes) const {
    return nlohmann::json::parse(bytes.begin(), bytes.end()).template get<T>();
  }
};

/// Stores T as CBOR (RFC 8949) through nlohmann: smaller and faster to parse
/// than JSON, not human-readable.
template <class T>
struct CborSerializer {
  /// Stored in the envelope: values of another codec are never parsed as CBOR.
  static constexpr std::uint8_t codec = codec_id::cbor;
  /// value as CBOR bytes.
  std::string serialize(const T& value) const {
    std::string out;
    nlohmann::json::to_cbor(nlohmann::json(value), out);
    return out;
  }
  /// Decodes CBOR bytes back into a T; throws on bytes that are not a T.
  T deserialize(std::string_view bytes) const {
    return nlohmann::json::from_cbor(bytes.begin(), bytes.end()).template get<T>();
  }
};

}  // namespace cacheaside
