// A caller of the asynchronous cache waiting for its result (internal): its
// handler is completed once, with the result, or at once by a cancellation while
// the work it started goes on for the others.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/system_error.hpp>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace cacheaside::detail {

namespace asio = boost::asio;

/// The exception a cancelled caller gets.
inline std::exception_ptr cancelled_error() {
  return std::make_exception_ptr(
      boost::system::system_error(asio::error::operation_aborted, "cacheaside: cancelled"));
}

/// Holds a handler of `void(std::exception_ptr, R)` until the result or a
/// cancellation, whichever comes first, and keeps the io executor busy meanwhile.
template <class Handler, class R>
class AsyncCaller : public std::enable_shared_from_this<AsyncCaller<Handler, R>> {
 public:
  AsyncCaller(Handler h, const asio::any_io_executor& io)
      : handler_(std::move(h)),
        io_(io),
        work_(asio::prefer(io, asio::execution::outstanding_work.tracked)) {}

  /// Connects the handler's cancellation slot, if it has one: any cancellation
  /// completes this caller with operation_aborted.
  void watch_cancellation() {
    slot_ = asio::get_associated_cancellation_slot(handler_);
    if (slot_.is_connected()) slot_.template emplace<Cancel>(this->weak_from_this());
  }

  /// The initiating call returned: from now on a result may run the handler inline.
  void initiated() { initiating_.store(false, std::memory_order_release); }

  /// The result (the first of result and cancellation wins).
  void complete(std::exception_ptr error, R result) {
    finish(std::move(error), std::move(result), initiating_.load(std::memory_order_acquire));
  }

  /// True once completed (by its result or a cancellation).
  bool finished() const { return done_.load(std::memory_order_acquire); }

  /// f runs once if a cancellation completes this caller (at once if one has):
  /// it lets go of what the caller waits on, so nothing of it stays behind.
  void on_cancelled(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!cancelled_) {
        release_ = std::move(f);
        return;
      }
    }
    f();
  }

 private:
  struct Cancel {
    explicit Cancel(std::weak_ptr<AsyncCaller> c) : caller(std::move(c)) {}
    std::weak_ptr<AsyncCaller> caller;
    void operator()(asio::cancellation_type type) {
      if (type == asio::cancellation_type::none) return;
      // Posted: the handler clears this slot, which must not happen inside emit().
      auto c = caller.lock();
      if (!c || !c->finish(cancelled_error(), R(), true)) return;  // the result came first
      std::function<void()> release;
      {
        std::lock_guard<std::mutex> lock(c->mu_);
        c->cancelled_ = true;
        release.swap(c->release_);
      }
      if (release) release();
    }
  };

  // False: completed before.
  bool finish(std::exception_ptr error, R result, bool post) {
    if (done_.exchange(true, std::memory_order_acq_rel)) return false;
    auto ex = asio::get_associated_executor(handler_, io_);
    auto run = [self = this->shared_from_this(), error = std::move(error),
                result = std::move(result)]() mutable {
      if (self->slot_.is_connected()) self->slot_.clear();
      Handler h = std::move(self->handler_);
      self->work_ = asio::any_io_executor();
      std::move(h)(std::move(error), std::move(result));
    };
    if (post) {
      asio::post(ex, std::move(run));
    } else {
      asio::dispatch(ex, std::move(run));
    }
    return true;
  }

  Handler handler_;
  asio::any_io_executor io_;
  asio::any_io_executor work_;  // tracked: io.run() does not return while we wait
  asio::cancellation_slot slot_;
  std::atomic<bool> done_{false};
  std::atomic<bool> initiating_{true};
  std::mutex mu_;
  bool cancelled_ = false;
  std::function<void()> release_;  // what a cancellation lets go of
};

}  // namespace cacheaside::detail
