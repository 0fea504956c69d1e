// The async cache's near log, read on demand on the AsyncMetaStore (internal):
// a get that finds the last read older than near_sync / 2 starts one (Near
// decides when, one at a time); the counter, then the new records' slots, each
// one batch of meta commands. Nothing runs while the cache is idle.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "../../async_meta_store.hpp"
#include "../../clock.hpp"
#include "../meta/op.hpp"
#include "../near/near.hpp"

namespace cacheaside::detail {

template <class Value>
class AsyncNearRead : public std::enable_shared_from_this<AsyncNearRead<Value>> {
 public:
  /// keep: what keeps store and near alive (the cache's core) until the read ends.
  AsyncNearRead(AsyncMetaStore& store, Near<Value>& near, asio::any_io_executor ex,
                std::shared_ptr<const void> keep)
      : store_(store), near_(near), ex_(std::move(ex)), keep_(std::move(keep)) {}

  void start() {
    started_ = near_.begin_read();
    counter_ = MetaOp();
    counter_.cmd = MetaCmd::incr;
    counter_.key = near_.log().counter_key();
    counter_.delta = 0;  // reads it, creating it if it is missing
    counter_.initial = near_.log().start_value();
    store_.async_execute(&counter_, 1, asio::bind_executor(ex_, [self = this->shared_from_this()] {
      self->counted();
    }));
  }

 private:
  void counted() {
    if (!near_.read_counted(counter_.status, counter_.number, read_, slots_)) return end();
    std::size_t n = slots_.keys.size();
    items_.assign(n, StoreItem());
    ops_.assign(n, MetaOp());
    for (std::size_t i = 0; i < n; ++i) {
      ops_[i].cmd = MetaCmd::get;
      ops_[i].key = slots_.keys[i];
      ops_[i].item = &items_[i];
    }
    store_.async_execute(
        ops_.data(), n,
        asio::bind_executor(ex_, [self = this->shared_from_this()] { self->slots_read(); }));
  }

  void slots_read() {
    StoreStatus st = StoreStatus::ok;
    std::vector<char> found(ops_.size(), 0);
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      if (ops_[i].status == StoreStatus::ok) {
        found[i] = 1;
      } else if (ops_[i].status != StoreStatus::not_found) {
        st = ops_[i].status;  // the read is not complete: not current
      }
    }
    near_.read_slots(st, slots_, items_, found, read_);
    end();
  }

  void end() { near_.read_ended(read_, started_); }

  AsyncMetaStore& store_;
  Near<Value>& near_;
  asio::any_io_executor ex_;
  std::shared_ptr<const void> keep_;
  Clock::time_point started_;
  MetaOp counter_;
  NearLog::Read read_;
  NearLog::Slots slots_;
  std::vector<StoreItem> items_;
  std::vector<MetaOp> ops_;
};

}  // namespace cacheaside::detail
