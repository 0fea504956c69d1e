// The async cache's pending invalidations, retried on the io executor (internal):
// a timer for the next round, each retry an AsyncWriteRun on the AsyncMetaStore,
// one round at a time. The table (PendingInvalidations) decides what a round
// tries, when the next is due and what a retry's answer means.
#pragma once

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "../../async_meta_store.hpp"
#include "../invalidation/group.hpp"
#include "../invalidation/invalidator.hpp"
#include "../invalidation/pending.hpp"
#include "../lookup/meta_lookups.hpp"
#include "write_run.hpp"

namespace cacheaside::detail {

template <class Value>
class AsyncRetries : public std::enable_shared_from_this<AsyncRetries<Value>> {
 public:
  using Time = PendingInvalidations::Time;
  using Fsm = InvalidateFsm<Value>;

  AsyncRetries(AsyncMetaStore& store, MetaLookups& lookups, GroupGeneration& group,
               const asio::any_io_executor& ex)
      : store_(store), lookups_(lookups), group_(group), strand_(ex), timer_(strand_) {}

  /// Set once, before the cache is used: the invalidations retried and what keeps
  /// them alive (the cache's core, which holds this). Records replayed from a
  /// spool meanwhile are retried now.
  void bind(Invalidator<Value>& inv, std::weak_ptr<const void> owner) {
    inv_ = &inv;
    owner_ = std::move(owner);
    if (inv.size() > 0) wake(std::chrono::steady_clock::now());
  }

  /// A round is due by `at` (from any thread, under the table's lock: posted).
  /// Before bind() (a spool replayed while the table is built) bind() tells.
  void wake(Time at) {
    asio::post(strand_, [self = this->weak_from_this(), owner = owner_, at] {
      auto keep = owner.lock();  // the core, which holds this
      if (auto s = self.lock(); s && keep) s->due(at);
    });
  }

  /// Ends the retries after one last round, now; then() once it is over (what
  /// failed stays in the spool, or is dropped, when the table goes).
  void close(std::function<void()> then) {
    asio::dispatch(strand_, [self = this->shared_from_this(), then = std::move(then)]() mutable {
      if (self->closed_) return then();
      self->closed_ = true;
      self->timer_.cancel();
      self->then_ = std::move(then);
      if (!self->running_) self->round();
    });
  }

 private:
  void due(Time at) {
    if (closed_) return;
    if (running_) {
      again_ = std::min(again_.value_or(at), at);
      return;
    }
    arm(at);
  }

  void arm(Time at) {
    if (armed_ && armed_at_ <= at) return;
    armed_ = true;
    armed_at_ = at;
    timer_.expires_at(at);
    timer_.async_wait(asio::bind_executor(
        strand_, [self = this->weak_from_this(), owner = owner_](boost::system::error_code ec) {
          auto keep = owner.lock();
          auto s = self.lock();
          if (!s || !keep || ec) return;
          s->armed_ = false;
          s->round();
        }));
  }

  void round() {
    running_ = true;
    progressed_ = false;
    tasks_ = inv_->pending().round_tasks();
    next_ = 0;
    step();
  }

  // The next task, on the store; the round stops at the first that fails.
  void step() {
    auto keep = owner_.lock();
    if (!keep) return;  // the cache is going: its table with it
    if (next_ == tasks_.size()) return end();
    const PendingInvalidations::Task& t = tasks_[next_];
    std::make_shared<AsyncWriteRun<Value>>(
        store_, lookups_, inv_->context(), group_, Fsm::retry_of(t.op), t.key, std::nullopt,
        strand_, keep,
        [self = this->shared_from_this()](std::exception_ptr e, bool, StoreStatus st) {
          auto& task = self->tasks_[self->next_];
          if (e || !self->inv_->pending().settle(task, st)) return self->end();
          self->progressed_ = true;
          ++self->next_;
          self->step();
        })
        ->start();
  }

  void end() {
    running_ = false;
    tasks_.clear();
    std::optional<Time> next = inv_->pending().round_ended(progressed_);
    if (closed_) {
      if (auto then = std::move(then_)) then();
      return;
    }
    if (again_ && (!next || *again_ < *next)) next = again_;
    again_.reset();
    if (next) arm(*next);
  }

  AsyncMetaStore& store_;
  MetaLookups& lookups_;
  GroupGeneration& group_;
  Invalidator<Value>* inv_ = nullptr;
  std::weak_ptr<const void> owner_;
  asio::strand<asio::any_io_executor> strand_;  // this object's state
  asio::steady_timer timer_;
  bool armed_ = false, running_ = false, closed_ = false, progressed_ = false;
  Time armed_at_;
  std::optional<Time> again_;  // a wake while a round ran
  std::vector<PendingInvalidations::Task> tasks_;
  std::size_t next_ = 0;
  std::function<void()> then_;
};

}  // namespace cacheaside::detail
