// Encoding meta protocol requests (internal): no I/O, so the blocking and the
// asynchronous stores write the same bytes.
#pragma once

#include <charconv>
#include <cstddef>
#include <string>

#include "op.hpp"

namespace cacheaside::detail {

template <class T>
inline void put_meta_number(std::string& out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

inline bool is_meta_store(MetaCmd c) {
  return c == MetaCmd::set || c == MetaCmd::add || c == MetaCmd::cas;
}

/// Appends op's request to out; `opaque` comes back as the reply's O token, so a
/// reply that answers another request is recognised.
inline void encode_meta_op(std::string& out, const MetaOp& op, std::size_t opaque) {
  switch (op.cmd) {
    case MetaCmd::get:
      out.append("mg ").append(op.key).append(" v f c");
      if (op.vivify) {
        out.append(" N");
        put_meta_number(out, op.vivify);
      }
      break;
    case MetaCmd::set:
    case MetaCmd::add:
    case MetaCmd::cas:
      out.append("ms ").append(op.key).append(" ");
      put_meta_number(out, op.value.size());
      out.append(" F");
      put_meta_number(out, op.flags);
      out.append(" T");
      put_meta_number(out, op.exptime);
      if (op.cmd == MetaCmd::add) out.append(" ME");
      if (op.cmd == MetaCmd::cas) {
        out.append(" C");
        put_meta_number(out, op.cas);
      }
      break;
    case MetaCmd::remove:
      out.append("md ").append(op.key);
      if (op.cas) {
        out.append(" C");
        put_meta_number(out, op.cas);
      }
      if (op.invalidate) {
        out.append(" I");
        if (op.exptime) {
          out.append(" T");
          put_meta_number(out, op.exptime);
        }
      }
      break;
    case MetaCmd::incr:
      out.append("ma ").append(op.key).append(" N");
      put_meta_number(out, op.exptime);
      out.append(" J");
      put_meta_number(out, op.initial);
      out.append(" D");
      put_meta_number(out, op.delta);
      out.append(" v");
      break;
  }
  out.append(" O");
  put_meta_number(out, opaque);
  out.append("\r\n");
  if (is_meta_store(op.cmd)) out.append(op.value).append("\r\n");
}

}  // namespace cacheaside::detail
