// The asynchronous driver of the invalidation machine (internal): a delete or
// a write-through run as MetaStepFsm rounds on the AsyncMetaStore.
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

#include "../../async_meta_store.hpp"
#include "../invalidation/invalidate_fsm.hpp"
#include "../lookup/meta_steps.hpp"
#include "../lookup/value_codec.hpp"

namespace cacheaside::detail {

/// Runs one InvalidateFsm to its end; then `done` gets whether the write was
/// applied (or what escaped it).
template <class Value>
class AsyncWriteRun : public std::enable_shared_from_this<AsyncWriteRun<Value>> {
 public:
  using Fsm = InvalidateFsm<Value>;
  using Done = std::function<void(std::exception_ptr, bool)>;

  AsyncWriteRun(AsyncMetaStore& store, MetaLookups& lookups, WriteContext<Value>& ctx,
                typename Fsm::Kind kind, std::string key, std::optional<Encoded> value,
                asio::any_io_executor ex, std::shared_ptr<const void> keep, Done done)
      : store_(store),
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
        case WriteStep::bump:
        case WriteStep::publish:
          // Neither is asked for: the async cache has no group and no near cache.
          return go(StoreStatus::error);
        case WriteStep::done:
          return finish(nullptr, fsm_.ok());
      }
    } catch (...) {
      finish(std::current_exception(), false);
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

  void finish(std::exception_ptr error, bool ok) {
    Done d = std::move(done_);
    done_ = nullptr;
    work_ = asio::any_io_executor();
    if (d) d(std::move(error), ok);
  }

  AsyncMetaStore& store_;
  std::optional<Encoded> value_;
  Fsm fsm_;
  MetaStepFsm step_;
  asio::any_io_executor ex_;
  asio::any_io_executor work_;
  std::shared_ptr<const void> keep_;
  Done done_;
};

}  // namespace cacheaside::detail
