// An invalidation machine's steps as rounds of meta commands (internal): the
// part of a write driver that talks to memcached, without I/O. The asynchronous
// driver sends each round on AsyncMetaStore (writes, and the retries of pending
// invalidations); the simulation runs the same rounds for some of its writers.
// What each step means is the blocking driver's run_write_step: a delete or a
// write-through (MetaStepFsm), the group's bump (GroupGeneration::bump) and the
// near log's append (NearLog::append) as their commands.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../store.hpp"
#include "../lookup/meta_steps.hpp"
#include "../meta/op.hpp"
#include "../near/near_log.hpp"
#include "group.hpp"
#include "invalidate_fsm.hpp"

namespace cacheaside::detail {

/// start(a), then run every round next() returns until it returns null; then
/// status() is the step's result for the machine's resume().
class MetaWriteRounds {
 public:
  /// log: the near log (null: no near cache, and publishing is a no-op).
  MetaWriteRounds(MetaLookups& lookups, GroupGeneration& group, const NearLog* log)
      : step_(lookups), group_(group), log_(log) {}

  MetaWriteRounds(const MetaWriteRounds&) = delete;
  MetaWriteRounds& operator=(const MetaWriteRounds&) = delete;

  /// a's key and value stay the machine's, unchanged until it resumes.
  void start(const WriteAction& a) {
    status_ = StoreStatus::ok;
    step_.reset();
    switch (a.step) {
      case WriteStep::remove:
        phase_ = Phase::step;
        return step_.remove(a.key);
      case WriteStep::store:
        phase_ = Phase::step;
        return step_.store(a.key, a.value->bytes, a.value->flags, a.value->exptime);
      case WriteStep::bump:
        phase_ = Phase::bump;
        return;
      case WriteStep::publish:
        record_key_ = std::string(a.key);
        phase_ = log_ ? Phase::counter : Phase::done;
        return;
      case WriteStep::done:
        phase_ = Phase::done;
        return;
    }
  }

  /// The next round to send, or null: the step is over.
  std::vector<MetaOp>* next() {
    switch (phase_) {
      case Phase::step:
        if (std::vector<MetaOp>* round = step_.next()) return round;
        status_ = step_.status();
        break;
      case Phase::bump:  // the generation moves on, remembered here
        return one(incr(group_.key(), 1, group_.bump_initial()), Phase::bumped);
      case Phase::bumped:
        status_ = ops_[0].status;
        if (status_ == StoreStatus::ok) group_.bumped(ops_[0].number);
        break;
      case Phase::counter:  // the append's number, then its slot
        return one(incr(log_->counter_key(), 1, log_->start_value()), Phase::counted);
      case Phase::counted: {
        status_ = ops_[0].status;
        if (status_ != StoreStatus::ok) break;
        slot_ = log_->slot(ops_[0].number);
        record_ = log_->record(ops_[0].number, record_key_);
        MetaOp set;
        set.cmd = MetaCmd::set;
        set.key = slot_;
        set.value = record_;
        return one(set, Phase::slot);
      }
      case Phase::slot:
        status_ = ops_[0].status;
        break;
      case Phase::done:
        break;
    }
    phase_ = Phase::done;
    return nullptr;
  }

  /// The step's result, once next() returned null.
  StoreStatus status() const { return status_; }

 private:
  enum class Phase { step, bump, bumped, counter, counted, slot, done };

  static MetaOp incr(std::string_view key, std::uint64_t delta, std::uint64_t initial) {
    MetaOp op;
    op.cmd = MetaCmd::incr;
    op.key = key;
    op.delta = delta;
    op.initial = initial;
    return op;
  }

  std::vector<MetaOp>* one(const MetaOp& op, Phase then) {
    ops_.assign(1, op);
    phase_ = then;
    return &ops_;
  }

  MetaStepFsm step_;
  GroupGeneration& group_;
  const NearLog* log_;
  Phase phase_ = Phase::done;
  StoreStatus status_ = StoreStatus::ok;
  std::vector<MetaOp> ops_;
  std::string record_key_, slot_, record_;
};

}  // namespace cacheaside::detail
