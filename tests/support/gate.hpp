// A gate that pins an interleaving: one thread arrives and blocks until the
// test opens it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace cacheaside_test {

class Gate {
 public:
  /// Called by the paused thread: says it is here, then waits to be let through.
  void arrive() {
    std::unique_lock<std::mutex> l(mu_);
    arrived_ = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }
  /// Waits (10 s at most) until a thread has arrived; false on time-out.
  bool wait_arrival() {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(10), [&] { return arrived_; });
  }
  void open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool arrived_ = false, open_ = false;
};

}  // namespace cacheaside_test
