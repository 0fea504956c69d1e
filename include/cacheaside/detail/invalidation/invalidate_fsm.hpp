// Writes that invalidate, as a machine without I/O (internal): a delete, a
// write-through, a group bump, and the retry of one pending invalidation. Each
// tells the other processes' near caches through the near log, and what the
// store does not confirm becomes a pending invalidation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "../../store.hpp"
#include "../lookup/value_codec.hpp"
#include "../miss/coroutine.hpp"
#include "../miss/flight.hpp"
#include "../miss/throttle.hpp"
#include "../near/near.hpp"
#include "../reporter.hpp"
#include "pending.hpp"

namespace cacheaside::detail {

/// What an invalidation needs done; the driver does it and sets `result`.
enum class WriteStep {
  remove,   // protocol remove of key
  store,    // protocol store of key (value)
  bump,     // increment the group's generation
  publish,  // append key to the near log ("*": everything)
  done,
};

struct WriteAction {
  WriteStep step = WriteStep::done;
  std::string_view key;
  const Encoded* value = nullptr;  // store
};

/// The tables an invalidation touches in this process.
template <class Value>
struct WriteContext {
  const Reporter& report;
  PendingInvalidations& pending;
  Near<Value>* near;  // null: off
  FlightTable<Value>& flights;
  FailSafeThrottle& throttle;
  std::string group_key;  // empty: no group
};

/// A write whose key needs the group generation, which could not be read: the key
/// could be any generation's, so a pending group bump covers them all. Until it is
/// applied, callers here keep the generation they read before: the loads they run
/// now must serve nobody who asks later.
template <class Value>
bool unreachable_group(WriteContext<Value>& c) {
  c.flights.forget_all();
  c.pending.add(PendingInvalidations::Op::bump, c.group_key, StoreStatus::unavailable,
                "group generation");
  return false;
}

template <class Value>
class InvalidateFsm {
 public:
  enum class Kind {
    remove,        // invalidate(key)
    put,           // put(key, value): `value` null when it could not be encoded
    all,           // invalidate_all(): bump the group
    retry_remove,  // a pending delete, again, then publish (it keeps its own records)
    retry_bump,    // a pending group bump, again, then publish
  };

  /// The kind that retries a pending record of op.
  static Kind retry_of(PendingInvalidations::Op op) {
    return op == PendingInvalidations::Op::bump ? Kind::retry_bump : Kind::retry_remove;
  }

  InvalidateFsm(WriteContext<Value>& c, Kind kind, std::string key, const Encoded* value = nullptr)
      : c_(c), kind_(kind), key_(std::move(key)), value_(value) {}

  /// The next action; `result` is what the store said to the last one.
  WriteAction resume(StoreStatus result = StoreStatus::ok) {
    st_ = result;
    CACHEASIDE_CORO_BEGIN(coro_)
    if (kind_ == Kind::all) {
      // Loads running now serve nobody who asks later: should the bump fail and stay
      // pending, callers keep the generation they have, and would join them.
      c_.flights.forget_all();
      drop_all();
      ticket_ = c_.pending.ticket();
      CACHEASIDE_CORO_YIELD(coro_, act(WriteStep::bump, group()));
      what_ = "incr";
      if (st_ == StoreStatus::ok) {
        what_ = "near log append";
        if (c_.near) {
          CACHEASIDE_CORO_YIELD(coro_, act(WriteStep::publish, "*"));
        } else {
          st_ = StoreStatus::ok;
        }
      }
      drop_all();
      if (st_ == StoreStatus::ok) {
        c_.pending.confirmed_all(ticket_);
        ok_ = true;
      } else {
        c_.report.cache_error(group(), st_, what_);
        c_.pending.add(PendingInvalidations::Op::bump, c_.group_key, st_, what_);
      }
      return finish();
    }
    if (kind_ == Kind::retry_remove || kind_ == Kind::retry_bump) {
      if (kind_ == Kind::retry_bump) {
        CACHEASIDE_CORO_YIELD(coro_, act(WriteStep::bump, group()));
      } else {
        CACHEASIDE_CORO_YIELD(coro_, act(WriteStep::remove, key_));
      }
      if (st_ == StoreStatus::not_found) st_ = StoreStatus::ok;
      if (st_ == StoreStatus::ok && c_.near) {
        CACHEASIDE_CORO_YIELD(
            coro_, act(WriteStep::publish,
                       kind_ == Kind::retry_bump ? std::string_view("*") : std::string_view(key_)));
      }
      ok_ = st_ == StoreStatus::ok;
      return finish();
    }
    // A write to key here: loads running now serve nobody who asks later, and a
    // throttled stale copy is gone.
    c_.flights.forget(key_);
    c_.throttle.clear(key_);
    c_.report.written(key_, kind_ == Kind::put);
    drop();
    ticket_ = c_.pending.ticket();  // a success confirms only failures before it
    if (kind_ == Kind::put && value_) {
      CACHEASIDE_CORO_YIELD(coro_, store());
      stored_ = c_.report.write(key_, st_, "set");
    }
    if (!stored_) {
      // A delete; after a failed set, so the old value does not stay.
      if (kind_ == Kind::put) ticket_ = c_.pending.ticket();
      CACHEASIDE_CORO_YIELD(coro_, act(WriteStep::remove, key_));
      if (st_ != StoreStatus::ok && st_ != StoreStatus::not_found) {
        what_ = kind_ == Kind::put ? "delete after a failed set" : "delete";
        c_.report.cache_error(key_, st_, what_);
        c_.pending.add(PendingInvalidations::Op::remove, key_, st_, what_);
        drop();
        return finish();
      }
    }
    if (c_.near) {
      CACHEASIDE_CORO_YIELD(coro_, act(WriteStep::publish, key_));
    } else {
      st_ = StoreStatus::ok;
    }
    if (st_ == StoreStatus::ok) {
      c_.pending.confirmed(key_, ticket_);
      ok_ = kind_ == Kind::remove || stored_;
    } else {
      c_.report.cache_error(key_, st_, "near log append");
      c_.pending.add(PendingInvalidations::Op::remove, key_, st_, "near log append");
    }
    drop();  // a read that raced the write may have offered the old value
    CACHEASIDE_CORO_END(coro_)
    return finish();
  }

  /// After done: the write was applied and published (for a put: stored).
  bool ok() const { return ok_; }
  /// After done: what the store said last (a retry: ok when applied).
  StoreStatus status() const { return st_; }

 private:
  WriteAction act(WriteStep s, std::string_view key) {
    WriteAction a;
    a.step = s;
    a.key = key;
    return a;
  }
  WriteAction store() {
    WriteAction a = act(WriteStep::store, key_);
    a.value = value_;
    return a;
  }
  WriteAction finish() {
    coro_ = -1;
    return WriteAction();
  }
  const std::string& group() const { return c_.group_key; }
  void drop() {
    if (c_.near) c_.near->drop(key_);
  }
  void drop_all() {
    if (c_.near) c_.near->drop_all();
  }

  WriteContext<Value>& c_;
  Kind kind_;
  std::string key_;
  const Encoded* value_;
  int coro_ = 0;
  StoreStatus st_ = StoreStatus::ok;
  std::uint64_t ticket_ = 0;
  const char* what_ = "";
  bool stored_ = false;
  bool ok_ = false;
};

}  // namespace cacheaside::detail
