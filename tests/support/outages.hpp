// Outages on a schedule, from a thread of their own: begin(), `length` later end(),
// `apart` between, `times` times or until destroyed (which ends one in progress).
// What an outage does to whoever is using the component meanwhile is decided by
// their own timeouts, not by this.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace cacheaside_test {

class Outages {
 public:
  Outages(std::function<void()> begin, std::function<void()> end, int times,
          std::chrono::milliseconds length, std::chrono::milliseconds apart)
      : begin_(std::move(begin)),
        end_(std::move(end)),
        thread_([=] { run(times, length, apart); }) {}
  Outages(const Outages&) = delete;
  Outages& operator=(const Outages&) = delete;
  ~Outages() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  /// Outages begun so far.
  int begun() {
    std::lock_guard<std::mutex> lock(mu_);
    return begun_;
  }

 private:
  void run(int times, std::chrono::milliseconds length, std::chrono::milliseconds apart) {
    std::unique_lock<std::mutex> lock(mu_);
    for (int i = 0; i < times; ++i) {
      if (cv_.wait_for(lock, apart, [&] { return stop_; })) return;
      begin_();
      ++begun_;
      bool stopping = cv_.wait_for(lock, length, [&] { return stop_; });
      end_();
      if (stopping) return;
    }
  }

  std::function<void()> begin_, end_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int begun_ = 0;
  std::thread thread_;  // last: started once the rest is constructed
};

}  // namespace cacheaside_test
