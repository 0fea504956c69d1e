// The asynchronous driver of the invalidation machine (internal): a delete or
// a write-through run as MetaStepFsm rounds on the AsyncMetaStore, the near log's
// append and the group's bump as their commands.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../../async_meta_store.hpp"
#include "../invalidation/group.hpp"
#include "../invalidation/invalidate_fsm.hpp"
#include "../lookup/meta_steps.hpp"
#include "../lookup/value_codec.hpp"
#include "../meta/op.hpp"
#include "../near/near_log.hpp"

namespace cacheaside::detail {

/// Runs one InvalidateFsm to its end; then `done` gets what escaped it, whether
/// the write was applied, and the store's last answer.
template <class Value>
class AsyncWriteRun : public std::enable_shared_from_this<AsyncWriteRun<Value>> {
 public:
  using Fsm = InvalidateFsm<Value>;
  using Done = std::function<void(std::exception_ptr, bool, StoreStatus)>;

  AsyncWriteRun(AsyncMetaStore& store, MetaLookups& lookups, WriteContext<Value>& ctx,
                GroupGeneration& group, typename Fsm::Kind kind, std::string key,
                std::optional<Encoded> value, asio::any_io_executor ex,
                std::shared_ptr<const void> keep, Done done)
      : store_(store),
        ctx_(ctx),
        group_(group),
        value_(std::move(value)),
        fsm_(ctx, kind, std::move(key), value_ ? &*value_ : nullptr),
        step_(lookups),
        ex_(std::move(ex)),
        work_(asio::prefer(ex_, asio::execution::outstanding_work.tracked)),
        keep_(std::move(keep)),
        done_(std::move(done)) {}

  void start() { go(StoreStatus::ok); }

 private:
  void go(StoreStatus result) {
    try {
      WriteAction a = fsm_.resume(result);
      switch (a.step) {
        case WriteStep::remove:
          step_.remove(a.key);
          return rounds();
        case WriteStep::store:
          step_.store(a.key, a.value->bytes, a.value->flags, a.value->exptime);
          return rounds();
        case WriteStep::publish:
          return publish(a.key);
        case WriteStep::bump:
          return bump();
        case WriteStep::done:
          return finish(nullptr, fsm_.ok(), fsm_.status());
      }
    } catch (...) {
      finish(std::current_exception(), false, StoreStatus::error);
    }
  }

  void rounds() {
    if (auto* round = step_.next()) {
      store_.async_execute(
          round->data(), round->size(),
          asio::bind_executor(ex_, [self = this->shared_from_this()] { self->rounds(); }));
      return;
    }
    go(step_.status());
  }

  // The group's generation moves on (GroupGeneration::bump), remembered here.
  void bump() {
    ops_[0] = MetaOp();
    ops_[0].cmd = MetaCmd::incr;
    ops_[0].key = group_.key();
    ops_[0].delta = 1;
    ops_[0].initial = group_.bump_initial();
    store_.async_execute(ops_, 1, asio::bind_executor(ex_, [self = this->shared_from_this()] {
                           MetaOp& incr = self->ops_[0];
                           if (incr.status == StoreStatus::ok) self->group_.bumped(incr.number);
                           self->go(incr.status);
                         }));
  }

  // The near log's append (NearLog::append) in two round trips: the counter's
  // increment, then the slot of the number it got.
  void publish(std::string_view key) {
    const NearLog& log = ctx_.near->log();
    record_key_ = std::string(key);
    ops_[0] = MetaOp();
    ops_[0].cmd = MetaCmd::incr;
    ops_[0].key = log.counter_key();
    ops_[0].delta = 1;
    ops_[0].initial = log.start_value();
    store_.async_execute(
        ops_, 1, asio::bind_executor(ex_, [self = this->shared_from_this()] {
          MetaOp& incr = self->ops_[0];
          if (incr.status != StoreStatus::ok) return self->go(incr.status);
          const NearLog& log = self->ctx_.near->log();
          self->slot_ = log.slot(incr.number);
          self->record_ = NearLog::record(incr.number, self->record_key_);
          MetaOp& set = self->ops_[1];
          set = MetaOp();
          set.cmd = MetaCmd::set;
          set.key = self->slot_;
          set.value = self->record_;
          self->store_.async_execute(
              &set, 1, asio::bind_executor(self->ex_, [self] { self->go(self->ops_[1].status); }));
        }));
  }

  void finish(std::exception_ptr error, bool ok, StoreStatus st) {
    Done d = std::move(done_);
    done_ = nullptr;
    work_ = asio::any_io_executor();
    if (d) d(std::move(error), ok, st);
  }

  AsyncMetaStore& store_;
  WriteContext<Value>& ctx_;
  GroupGeneration& group_;
  std::optional<Encoded> value_;
  Fsm fsm_;
  MetaStepFsm step_;
  asio::any_io_executor ex_;
  asio::any_io_executor work_;
  std::shared_ptr<const void> keep_;
  Done done_;
  MetaOp ops_[2];  // publish: the increment, then the slot
  std::string record_key_, slot_, record_;
};

}  // namespace cacheaside::detail
