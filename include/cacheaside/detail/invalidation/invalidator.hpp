// Invalidation in one place (internal): the writes that invalidate (InvalidateFsm),
// run against the store, the near log and the group counter, and the table of
// those the store did not confirm, retried until it does.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "../../protocol.hpp"
#include "../../store.hpp"
#include "../lookup/value_codec.hpp"
#include "../miss/context.hpp"
#include "../near/near.hpp"
#include "../reporter.hpp"
#include "group.hpp"
#include "invalidate_fsm.hpp"
#include "pending.hpp"

namespace cacheaside::detail {

/// Does one step an invalidation machine asked for (the blocking driver's, and the
/// simulation's: one copy of what each step means).
template <class Value>
StoreStatus run_write_step(const WriteAction& a, LookupProtocol& protocol, GroupGeneration& group,
                           Near<Value>* near) {
  switch (a.step) {
    case WriteStep::remove:
      return protocol.remove(a.key);
    case WriteStep::store:
      return protocol.store(a.key, a.value->bytes, a.value->flags, a.value->exptime);
    case WriteStep::bump:
      return group.bump();
    case WriteStep::publish:
      return near ? near->publish(std::string(a.key)) : StoreStatus::ok;
    case WriteStep::done:
      break;
  }
  return StoreStatus::ok;
}

/// Runs an invalidation machine to its end, each step done by run_write_step.
template <class Value>
void run_write(InvalidateFsm<Value>& fsm, LookupProtocol& protocol, GroupGeneration& group,
               Near<Value>* near) {
  StoreStatus st = StoreStatus::ok;
  for (WriteAction a = fsm.resume(st); a.step != WriteStep::done; a = fsm.resume(st))
    st = run_write_step(a, protocol, group, near);
}

template <class Value>
class Invalidator {
 public:
  using Fsm = InvalidateFsm<Value>;

  Invalidator(LookupProtocol& protocol, GroupGeneration& group, Near<Value>* near,
              MissTables<Value>& tables, PendingInvalidations::Settings settings,
              const Reporter& report)
      : protocol_(protocol),
        group_(group),
        near_(near),
        ctx_{report, pending_, near, tables.flights, tables.throttle, group.key()},
        pending_(
            std::move(settings),
            [this](PendingInvalidations::Op op, const std::string& key) { return apply(op, key); },
            report) {}

  /// Deletes mkey and tells the other near caches; false when the store did not
  /// confirm it (then it is pending).
  bool invalidate(const std::string& mkey) { return run(Fsm::Kind::remove, mkey, nullptr); }

  /// Writes value through (null: it could not be encoded); when it cannot be
  /// stored, the old value is deleted instead. True when stored and published.
  bool put(const std::string& mkey, const Encoded* value) {
    return run(Fsm::Kind::put, mkey, value);
  }

  /// Bumps the group's generation: every key of the cache moves on.
  bool invalidate_all() { return run(Fsm::Kind::all, group_.key(), nullptr); }

  /// A write whose key needs the group generation, which could not be read: the
  /// store is away, and the key could be any generation's. A pending group bump
  /// covers them all. Returns once it is spooled.
  bool unreachable_group() {
    note_unreachable_group();
    pending_.wait_durable();
    return false;
  }
  /// unreachable_group() without waiting for the spool (see when_durable).
  void note_unreachable_group() { detail::unreachable_group(ctx_); }

  /// d(ok) once what this cache made pending so far is spooled (at once without
  /// a spool): the asynchronous cache completes its callers then.
  void when_durable(SpoolWriter::Durable d) { pending_.when_durable(std::move(d)); }

  const PendingInvalidations& pending() const { return pending_; }
  /// The table, for an owner that runs its retry rounds (Settings::wake).
  PendingInvalidations& pending() { return pending_; }
  /// What a write run elsewhere (the async driver) works on.
  WriteContext<Value>& context() { return ctx_; }
  std::size_t size() const { return pending_.size(); }
  std::size_t retry_now() { return pending_.retry_now(); }

 private:
  // Returns once a record it made pending is spooled, as the caller may crash next.
  bool run(typename Fsm::Kind kind, const std::string& key, const Encoded* value) {
    Fsm fsm(ctx_, kind, key, value);
    drive(fsm);
    pending_.wait_durable();
    return fsm.ok();
  }

  void drive(Fsm& fsm) { run_write(fsm, protocol_, group_, near_); }

  // A pending invalidation, again (the retry thread): applied when ok.
  StoreStatus apply(PendingInvalidations::Op op, const std::string& key) {
    Fsm fsm(ctx_, Fsm::retry_of(op), key);
    drive(fsm);
    return fsm.status();
  }

  LookupProtocol& protocol_;
  GroupGeneration& group_;
  Near<Value>* near_;
  // Before the table: a spool replayed at its construction is retried at once,
  // through ctx_ (which only binds a reference to the table).
  WriteContext<Value> ctx_;
  PendingInvalidations pending_;
};

}  // namespace cacheaside::detail
