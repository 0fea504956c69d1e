// The group's generation read without blocking (internal): GroupGeneration's
// get, add-if-absent and retry, each command sent on the AsyncMetaStore.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "../../async_meta_store.hpp"
#include "../../store.hpp"
#include "../invalidation/group.hpp"
#include "../meta/op.hpp"

namespace cacheaside::detail {

class AsyncGroupRead : public std::enable_shared_from_this<AsyncGroupRead> {
 public:
  /// Gets the generation, or nullopt and what the store said.
  using Done = std::function<void(std::optional<std::uint64_t>, StoreStatus)>;

  AsyncGroupRead(AsyncMetaStore& store, GroupGeneration& group, asio::any_io_executor ex,
                 std::shared_ptr<const void> keep, Done done)
      : store_(store),
        group_(group),
        ex_(std::move(ex)),
        keep_(std::move(keep)),
        done_(std::move(done)) {}

  void start() { get(); }

 private:
  void get() {
    op_ = MetaOp();
    op_.cmd = MetaCmd::get;
    op_.key = group_.key();
    item_ = StoreItem();
    op_.item = &item_;
    send([](AsyncGroupRead& r) { r.got(); });
  }

  void got() {
    switch (group_.after_get(op_.status, item_.value, gen_, failed_)) {
      case GroupGeneration::Next::use:
        return finish(gen_);
      case GroupGeneration::Next::create:
        return add();
      case GroupGeneration::Next::retry:
      case GroupGeneration::Next::fail:
        return finish(std::nullopt);
    }
  }

  void add() {
    text_ = std::to_string(gen_);
    op_ = MetaOp();
    op_.cmd = MetaCmd::add;
    op_.key = group_.key();
    op_.value = text_;
    send([](AsyncGroupRead& r) { r.added(); });
  }

  void added() {
    switch (group_.after_add(op_.status, gen_, failed_)) {
      case GroupGeneration::Next::use:
        return finish(gen_);
      case GroupGeneration::Next::retry:  // another process created it: read it
        if (++tries_ < GroupGeneration::max_tries) return get();
        failed_ = StoreStatus::error;
        return finish(std::nullopt);
      case GroupGeneration::Next::create:
      case GroupGeneration::Next::fail:
        return finish(std::nullopt);
    }
  }

  template <class Then>
  void send(Then then) {
    store_.async_execute(
        &op_, 1, asio::bind_executor(ex_, [self = shared_from_this(), then] { then(*self); }));
  }

  void finish(std::optional<std::uint64_t> gen) {
    Done d = std::move(done_);
    done_ = nullptr;
    d(gen, failed_);
  }

  AsyncMetaStore& store_;
  GroupGeneration& group_;
  asio::any_io_executor ex_;
  std::shared_ptr<const void> keep_;
  Done done_;
  MetaOp op_;
  StoreItem item_;
  std::string text_;
  std::uint64_t gen_ = 0;
  StoreStatus failed_ = StoreStatus::ok;
  int tries_ = 0;
};

}  // namespace cacheaside::detail
