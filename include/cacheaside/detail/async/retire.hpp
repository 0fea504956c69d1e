// Teardown that blocks, kept off io threads (internal): what joins a thread or
// waits for a server on its way out is destroyed by a thread of its own when the
// last owner lets go while running an io_context's handler.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

namespace cacheaside::detail {

namespace asio = boost::asio;

/// True when this thread runs ex's io_context now (or ex is of a kind that
/// cannot tell: then it may).
inline bool may_run_in_this_thread(const asio::any_io_executor& ex) {
  using IoEx = asio::io_context::executor_type;
  if (const auto* e = ex.target<IoEx>()) return e->running_in_this_thread();
  if (const auto* e = ex.target<asio::strand<IoEx>>()) return e->running_in_this_thread();
  return true;
}

/// One thread that runs teardowns in turn, started at the first; at exit it
/// finishes what it was given before the program's other statics go.
class Retirement {
 public:
  /// Runs fn on the retirement thread (here, if no thread can be had).
  static void run(std::function<void()> fn) { instance().add(std::move(fn)); }

  Retirement(const Retirement&) = delete;
  Retirement& operator=(const Retirement&) = delete;

  ~Retirement() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  Retirement() = default;

  static Retirement& instance() {
    static Retirement r;
    return r;
  }

  void add(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!thread_.joinable() && !stop_) {
        try {
          thread_ = std::thread([this] { loop(); });
        } catch (const std::system_error&) {
        }
      }
      if (thread_.joinable() && !stop_) {
        jobs_.push_back(std::move(fn));
        cv_.notify_all();
        return;
      }
    }
    fn();
  }

  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      fn = nullptr;
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cacheaside::detail
