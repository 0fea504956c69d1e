// One meta protocol command and its reply, and what runs batches of them
// (internal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "../../exptime.hpp"
#include "../../store.hpp"

namespace cacheaside::detail {

enum class MetaCmd : std::uint8_t {
  get,  ///< mg <key> v f c [N<vivify>]
  set,  ///< ms <key> <len> F T            (add: ME, cas: C<cas>)
  add,
  cas,
  remove,  ///< md <key> [C<cas>] [I [T<exptime>]]
  incr,    ///< ma <key> N<exptime> J<initial> D<delta> v
};

/// A command to send and, after MetaExecutor::execute, its reply.
struct MetaOp {
  MetaCmd cmd = MetaCmd::get;
  std::string_view key;
  std::string_view value;     ///< set, add, cas
  std::uint32_t flags = 0;    ///< set, add, cas
  Exptime exptime = 0;        ///< set, add, cas; incr (vivify); remove with `invalidate`
  std::uint64_t cas = 0;      ///< cas; remove (0: unconditional)
  std::uint32_t vivify = 0;   ///< get: on a miss, create a placeholder for this many seconds
  bool invalidate = false;    ///< remove: mark stale (md I) instead of deleting
  std::uint64_t delta = 0;    ///< incr
  std::uint64_t initial = 0;  ///< incr

  StoreStatus status = StoreStatus::error;
  /// Where the store knows more than the status (a connection refused at TLS or
  /// authentication): a static description for the cache's event; else null.
  const char* why = nullptr;
  bool sent = false;          ///< written to a server: it may have run, answered or not
  StoreItem* item = nullptr;  ///< get: where the value goes (required for get)
  bool won = false;           ///< get: W, this caller may load and store the key
  bool claimed = false;       ///< get: Z, another caller has that right
  bool stale = false;         ///< get: X, marked stale by an invalidation
  std::uint64_t number = 0;   ///< incr: the new value
};

/// Runs commands: every op gets a status; ops for one server go out in one
/// write and come back in one read.
class MetaExecutor {
 public:
  virtual ~MetaExecutor() = default;
  virtual void execute(MetaOp* ops, std::size_t n) = 0;
};

}  // namespace cacheaside::detail
