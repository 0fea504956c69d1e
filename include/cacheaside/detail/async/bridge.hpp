// Meta commands run on an AsyncMetaStore by a thread that may block (internal):
// the pending invalidations' retry thread. Never called from an io thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "../../async_meta_store.hpp"
#include "../meta/op.hpp"

namespace cacheaside::detail {

class AsyncMetaBridge final : public MetaExecutor {
 public:
  explicit AsyncMetaBridge(std::shared_ptr<AsyncMetaStore> store) : store_(std::move(store)) {}

  /// Waits at most twice the poll timeout: should the io_context not run, the
  /// ops time out here, and their copies stay with the store until it lets go.
  void execute(MetaOp* ops, std::size_t n) override {
    auto c = std::make_shared<Copy>();
    c->text.reserve(2 * n);  // no reallocation: the views below point into it
    c->items.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      MetaOp op = ops[i];
      c->text.emplace_back(op.key);
      op.key = c->text.back();
      c->text.emplace_back(op.value);
      op.value = c->text.back();
      if (op.item) op.item = &c->items[i];
      c->ops.push_back(op);
    }
    auto done = c->done.get_future();
    store_->async_execute(c->ops.data(), n, [c] { c->done.set_value(); });
    auto bound = 2 * store_->core()->poll_timeout() + std::chrono::milliseconds(100);
    if (done.wait_for(bound) != std::future_status::ready) {
      for (std::size_t i = 0; i < n; ++i) ops[i].status = StoreStatus::timeout;
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const MetaOp& r = c->ops[i];
      ops[i].status = r.status;
      ops[i].won = r.won;
      ops[i].claimed = r.claimed;
      ops[i].stale = r.stale;
      ops[i].number = r.number;
      if (ops[i].item) *ops[i].item = std::move(c->items[i]);
    }
  }

 private:
  struct Copy {
    std::vector<MetaOp> ops;
    std::vector<std::string> text;
    std::vector<StoreItem> items;
    std::promise<void> done;
  };

  std::shared_ptr<AsyncMetaStore> store_;
};

}  // namespace cacheaside::detail
