// Helpers of the async cache's tests: the cache type over the test user, an io loop
// bounded in time, and a loader the test answers by hand.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/json.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "user.hpp"

namespace cacheaside_test {

using AsyncUsers = cacheaside::AsyncCacheAside<int, User, cacheaside::JsonSerializer<User>>;
using Got = std::optional<User>;

// Runs io's handlers until finished(), for 10 s at most (a test's loader may hold
// a handler the test answers later, and a run() returns at once when io is idle).
template <class Pred>
void run_while_not(boost::asio::io_context& io, Pred finished) {
  io.restart();
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!finished() && std::chrono::steady_clock::now() < until)
    io.run_one_for(std::chrono::milliseconds(10));
  REQUIRE(finished());
}

// A loader that keeps its handlers until the test answers them: the test decides
// what happens while a load is in flight.
struct HeldLoader {
  std::mutex mu;
  std::deque<std::pair<int, cacheaside::LoadHandler<User>>> held;
  std::atomic<int> calls{0};
  AsyncUsers::Loader loader() {
    return [this](const int& id, cacheaside::LoadHandler<User> h) {
      ++calls;
      std::lock_guard<std::mutex> lock(mu);
      held.emplace_back(id, std::move(h));
    };
  }
  std::size_t waiting() {
    std::lock_guard<std::mutex> lock(mu);
    return held.size();
  }
  // Answers the oldest held load with v.
  void answer(Got v) {
    cacheaside::LoadHandler<User> h;
    {
      std::lock_guard<std::mutex> lock(mu);
      REQUIRE(!held.empty());
      h = std::move(held.front().second);
      held.pop_front();
    }
    h(nullptr, std::move(v));
  }
  void fail(const std::string& why) {
    cacheaside::LoadHandler<User> h;
    {
      std::lock_guard<std::mutex> lock(mu);
      REQUIRE(!held.empty());
      h = std::move(held.front().second);
      held.pop_front();
    }
    h(std::make_exception_ptr(std::runtime_error(why)), std::nullopt);
  }
};

// Options with a TTL long enough for any test.
inline cacheaside::Options quick() {
  cacheaside::Options o;
  o.ttl = std::chrono::seconds(60);
  return o;
}

}  // namespace cacheaside_test
