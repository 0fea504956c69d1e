// The asynchronous driver of the invalidation machine (internal): each step's
// rounds (MetaWriteRounds, which the simulation runs too) sent on the
// AsyncMetaStore.
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
#include <utility>
#include <vector>

#include "../../async_meta_store.hpp"
#include "../invalidation/group.hpp"
#include "../invalidation/invalidate_fsm.hpp"
#include "../invalidation/meta_write_rounds.hpp"
#include "../lookup/meta_steps.hpp"
#include "../lookup/value_codec.hpp"
#include "../meta/op.hpp"

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
        value_(std::move(value)),
        fsm_(ctx, kind, std::move(key), value_ ? &*value_ : nullptr),
        rounds_(lookups, group, ctx.near ? &ctx.near->log() : nullptr),
        ex_(std::move(ex)),
        work_(asio::prefer(ex_, asio::execution::outstanding_work.tracked)),
        keep_(std::move(keep)),
        done_(std::move(done)) {}

  void start() { go(StoreStatus::ok); }

 private:
  void go(StoreStatus result) {
    try {
      WriteAction a = fsm_.resume(result);
      if (a.step == WriteStep::done) return finish(nullptr, fsm_.ok(), fsm_.status());
      rounds_.start(a);
      rounds();
    } catch (...) {
      finish(std::current_exception(), false, StoreStatus::error);
    }
  }

  void rounds() {
    std::vector<MetaOp>* round = nullptr;
    try {
      round = rounds_.next();
    } catch (...) {
      return finish(std::current_exception(), false, StoreStatus::error);
    }
    if (!round) return go(rounds_.status());
    store_.async_execute(
        round->data(), round->size(),
        asio::bind_executor(ex_, [self = this->shared_from_this()] { self->rounds(); }));
  }

  void finish(std::exception_ptr error, bool ok, StoreStatus st) {
    Done d = std::move(done_);
    done_ = nullptr;
    work_ = asio::any_io_executor();
    if (d) d(std::move(error), ok, st);
  }

  AsyncMetaStore& store_;
  std::optional<Encoded> value_;
  Fsm fsm_;
  MetaWriteRounds rounds_;
  asio::any_io_executor ex_;
  asio::any_io_executor work_;
  std::shared_ptr<const void> keep_;
  Done done_;
};

}  // namespace cacheaside::detail
