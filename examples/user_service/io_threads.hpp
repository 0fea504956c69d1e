// The service's io threads: one io_context each, one per core.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <thread>
#include <vector>

namespace user_service {

/// n io_contexts that run, with or without work, from run() until stop().
class IoThreads {
 public:
  explicit IoThreads(int n) {
    for (int i = 0; i < n; ++i) {
      owned_.push_back(std::make_unique<boost::asio::io_context>(1));  // one thread each
      contexts_.push_back(owned_.back().get());
      busy_.push_back(boost::asio::make_work_guard(*contexts_.back()));
    }
  }
  const std::vector<boost::asio::io_context*>& contexts() const { return contexts_; }
  boost::asio::io_context& front() { return *contexts_.front(); }

  /// Runs the first context on the calling thread and each other on a thread of its
  /// own; returns when all have stopped.
  void run() {
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts_.size(); ++i)
      threads.emplace_back([c = contexts_[i]] { c->run(); });
    contexts_.front()->run();
    for (auto& t : threads) t.join();
  }
  /// From any thread.
  void stop() {
    for (auto* c : contexts_) c->stop();
  }

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> owned_;
  std::vector<boost::asio::io_context*> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> busy_;
};

}  // namespace user_service
