// Meta protocol replies (internal): a reply line parsed, then applied to the op
// it answers. No I/O. The parser sees bytes from the network: it never reads
// past the line and accepts only what the protocol allows.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

#include "command.hpp"
#include "op.hpp"

namespace cacheaside::detail {

enum class MetaCode : std::uint8_t {
  va,            ///< a value of `size` bytes follows
  hd,            ///< done, nothing follows
  en,            ///< mg: no such key
  nf,            ///< not found
  ns,            ///< not stored
  ex,            ///< exists: the CAS id did not match
  mn,            ///< the end of an `mn` pipeline
  error,         ///< ERROR (an unknown command)
  client_error,  ///< CLIENT_ERROR <message>
  server_error,  ///< SERVER_ERROR <message>
};

/// A reply line's fields. Flags the client did not ask for are ignored.
struct MetaReply {
  MetaCode code = MetaCode::error;
  std::size_t size = 0;      ///< va: the value's length
  std::uint32_t flags = 0;   ///< f: the client flags
  std::uint64_t cas = 0;     ///< c: the CAS id
  std::uint64_t opaque = 0;  ///< O: echoed from the request
  bool has_opaque = false;
  bool won = false;          ///< W: this client may load and store the key
  bool claimed = false;      ///< Z: another client already has that right
  bool stale = false;        ///< X: the item was marked stale (md I)
  std::string_view message;  ///< *_ERROR: the server's words
};

/// Largest value a reply may announce (memcached's item size limit is at most 1 GiB).
inline constexpr std::size_t max_meta_value = std::size_t{1} << 30;

namespace meta_reply_detail {

// Digits only, no sign, no overflow.
template <class T>
inline bool parse_uint(std::string_view s, T& out) {
  if (s.empty() || s.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (~std::uint64_t{0} - d) / 10) return false;
    v = v * 10 + d;
  }
  if (v > static_cast<std::uint64_t>(T(~T(0)))) return false;
  out = static_cast<T>(v);
  return true;
}

inline std::string_view next_token(std::string_view& rest) {
  std::size_t b = rest.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(b);
  std::size_t e = rest.find(' ');
  std::string_view tok = rest.substr(0, e);
  rest.remove_prefix(e == std::string_view::npos ? rest.size() : e);
  return tok;
}

}  // namespace meta_reply_detail

/// Parses a reply line (without its "\r\n"). False when it is not one the
/// protocol allows: the connection it came from can no longer be trusted.
inline bool parse_meta_reply(std::string_view line, MetaReply& r) {
  using namespace meta_reply_detail;
  r = MetaReply();
  for (char c : line)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  std::string_view rest = line;
  std::string_view code = next_token(rest);
  auto error_line = [&](MetaCode c) {
    r.code = c;
    std::size_t b = rest.find_first_not_of(' ');
    r.message = b == std::string_view::npos ? std::string_view() : rest.substr(b);
    return true;
  };
  if (code == "ERROR") return error_line(MetaCode::error);
  if (code == "CLIENT_ERROR") return error_line(MetaCode::client_error);
  if (code == "SERVER_ERROR") return error_line(MetaCode::server_error);
  if (code.size() != 2) return false;
  static constexpr std::pair<std::string_view, MetaCode> codes[] = {
      {"VA", MetaCode::va}, {"HD", MetaCode::hd}, {"EN", MetaCode::en}, {"NF", MetaCode::nf},
      {"NS", MetaCode::ns}, {"EX", MetaCode::ex}, {"MN", MetaCode::mn}};
  bool known = false;
  for (const auto& c : codes) {
    if (c.first == code) {
      r.code = c.second;
      known = true;
    }
  }
  if (!known) return false;
  if (r.code == MetaCode::va) {
    if (!parse_uint(next_token(rest), r.size) || r.size > max_meta_value) return false;
  }
  if (r.code == MetaCode::mn) return rest.find_first_not_of(' ') == std::string_view::npos;
  for (std::string_view tok = next_token(rest); !tok.empty(); tok = next_token(rest)) {
    std::string_view arg = tok.substr(1);
    switch (tok[0]) {
      case 'f':
        if (!parse_uint(arg, r.flags)) return false;
        break;
      case 'c':
        if (!parse_uint(arg, r.cas)) return false;
        break;
      case 'O':
        if (!parse_uint(arg, r.opaque)) return false;
        r.has_opaque = true;
        break;
      case 'W':
      case 'Z':
      case 'X':
        if (!arg.empty()) return false;
        (tok[0] == 'W' ? r.won : tok[0] == 'Z' ? r.claimed : r.stale) = true;
        break;
      default:
        break;  // a flag we did not ask for (t, k, s, ...): its argument is opaque
    }
  }
  return true;
}

/// What a reply means for the op it answers.
enum class MetaNext : std::uint8_t {
  done,    ///< op.status is set
  value,   ///< r.size bytes and "\r\n" follow: read them, then meta_reply_value
  broken,  ///< the connection is out of step (or the reply answers another request): close it
};

/// Applies a parsed reply line to the op it should answer (sent with `opaque`).
inline MetaNext meta_reply_line(const MetaReply& r, MetaOp& op, std::uint64_t opaque) {
  if (r.code == MetaCode::server_error) {
    // The server answered this request and stays in step (it skips a refused value).
    bool big = r.message.find("too large") != std::string_view::npos;
    op.status = is_meta_store(op.cmd) && big ? StoreStatus::too_large : StoreStatus::error;
    return MetaNext::done;
  }
  if (r.code == MetaCode::error || r.code == MetaCode::client_error || r.code == MetaCode::mn)
    return MetaNext::broken;
  if (!r.has_opaque || r.opaque != opaque) return MetaNext::broken;
  auto done = [&](StoreStatus st) {
    op.status = st;
    return MetaNext::done;
  };
  switch (op.cmd) {
    case MetaCmd::get:
      if (r.code == MetaCode::en) return done(StoreStatus::not_found);
      return r.code == MetaCode::va ? MetaNext::value : MetaNext::broken;
    case MetaCmd::incr:
      if (r.code == MetaCode::nf) return done(StoreStatus::not_found);
      return r.code == MetaCode::va && r.size <= 20 ? MetaNext::value : MetaNext::broken;
    case MetaCmd::set:
    case MetaCmd::add:
    case MetaCmd::cas:
    case MetaCmd::remove:
      switch (r.code) {
        case MetaCode::hd:
          return done(StoreStatus::ok);
        case MetaCode::ns:
          return done(StoreStatus::not_stored);
        case MetaCode::ex:
          return done(StoreStatus::exists);
        case MetaCode::nf:
          return done(StoreStatus::not_found);
        default:
          return MetaNext::broken;
      }
  }
  return MetaNext::broken;
}

/// The value of a VA reply, read: for a get it is already in op.item->value
/// (`bytes` is that string); for an incr, the digits.
inline MetaNext meta_reply_value(const MetaReply& r, std::string_view bytes, MetaOp& op) {
  if (op.cmd == MetaCmd::get) {
    op.item->flags = r.flags;
    op.item->cas = r.cas;
    op.won = r.won;
    op.claimed = r.claimed;
    op.stale = r.stale;
    op.status = StoreStatus::ok;
    return MetaNext::done;
  }
  auto res = std::from_chars(bytes.data(), bytes.data() + bytes.size(), op.number);
  if (res.ec != std::errc() || res.ptr != bytes.data() + bytes.size()) return MetaNext::broken;
  op.status = StoreStatus::ok;
  return MetaNext::done;
}

}  // namespace cacheaside::detail
