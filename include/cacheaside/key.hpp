// cacheaside: key_traits<Key> and the encoding of key text into safe memcached keys
// (standard library only). The encoding is specified in docs/wire-format.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

#include "detail/sha256.hpp"

namespace cacheaside {

/// Turns a Key into key text. Specialize it for your own key types:
///
///     template <> struct cacheaside::key_traits<OrderId> {
///       static std::string to_string(const OrderId& k) { return k.str(); }
///     };
///
/// Distinct keys must give distinct text; any bytes are allowed (they are encoded).
template <class Key, class Enable = void>
struct key_traits;

/// Integers (not bool): their decimal text, so `user_<id>` reads as in any client.
template <class Key>
struct key_traits<Key, std::enable_if_t<std::is_integral_v<Key> && !std::is_same_v<Key, bool>>> {
  /// Decimal text of k.
  static std::string to_string(Key k) { return std::to_string(k); }
};

/// Strings: as they are (unsafe bytes are encoded later, not here).
template <>
struct key_traits<std::string> {
  /// k itself, not copied.
  static const std::string& to_string(const std::string& k) { return k; }
};

/// String views: as they are.
template <>
struct key_traits<std::string_view> {
  /// A copy of k.
  static std::string to_string(std::string_view k) { return std::string(k); }
};

/// memcached's key length limit.
inline constexpr std::size_t max_key_length = 250;
/// The one character the encoding reserves: it never appears in an encoded key
/// except to start an escape (%XX), a digest (%H...) or a group generation
/// (%g...).
inline constexpr char key_escape_char = '%';

namespace detail {
inline bool plain_key_byte(unsigned char c) { return c > 0x20 && c < 0x7f && c != '%'; }
}  // namespace detail

/// Appends the safe memcached key for `text` to `out`, using at most `limit`
/// bytes. Printable ASCII without spaces or '%' within the limit is kept as it
/// is; other bytes become %XX; a result over the limit keeps a readable head
/// and ends in %H + SHA-256. Distinct texts always give distinct keys.
inline void encode_key_to(std::string_view text, std::string& out,
                          std::size_t limit = max_key_length) {
  bool plain = text.size() <= limit;
  std::size_t escaped_size = 0;
  for (unsigned char c : text) {
    bool ok = detail::plain_key_byte(c);
    plain = plain && ok;
    escaped_size += ok ? 1 : 3;
  }
  if (plain && !text.empty()) {
    out.append(text);
    return;
  }
  if (text.empty()) {  // memcached has no empty key; "%Z" is never produced otherwise
    out.append("%Z");
    return;
  }
  static constexpr char hex[] = "0123456789ABCDEF";
  constexpr std::size_t digest_len = 2 + 64;  // "%H" + hex digest
  bool shorten = escaped_size > limit;
  std::size_t budget = shorten ? (limit > digest_len ? limit - digest_len : 0) : limit;
  std::size_t start = out.size();
  for (unsigned char c : text) {
    std::size_t need = detail::plain_key_byte(c) ? 1 : 3;
    if (out.size() - start + need > budget) break;
    if (need == 1) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  if (shorten) {
    out.append("%H");
    out.append(detail::sha256_hex(text));
  }
}

/// The safe memcached key for `text` (see encode_key_to).
inline std::string encode_key(std::string_view text, std::size_t limit = max_key_length) {
  std::string out;
  encode_key_to(text, out, limit);
  return out;
}

}  // namespace cacheaside
