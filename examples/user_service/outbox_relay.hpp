// The outbox relay: every `interval`, the changes the database's triggers recorded
// (UserRepository::changes) are invalidated through the caches (AsyncUsers::
// apply_changes), and their rows removed once memcached confirmed them. It catches
// what the request path's own invalidation cannot: writes by other programs, and a
// writer that died between its commit and its invalidation. Several instances may
// relay one outbox: invalidating twice is harmless.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <functional>

#include "async_users.hpp"
#include "repository.hpp"

namespace user_service {

class OutboxRelay {
 public:
  /// The database work runs on `pool`.
  OutboxRelay(UserRepository& repo, AsyncUsers& users, boost::asio::any_io_executor pool,
              std::chrono::milliseconds interval, bool quiet);

  /// Starts the loop on `io`; it runs until the io_context stops. ready() is called
  /// once the outbox was relayed for the first time (or could not be).
  void start(boost::asio::any_io_executor io, std::function<void()> ready);

 private:
  struct Pass {
    std::size_t read = 0, done = 0;  // rows read; rows confirmed and removed
  };
  static constexpr std::size_t kBatch = 512;  // rows a pass takes: one fanout, one delete

  Task<void> run(std::function<void()> ready);
  Task<Pass> pass();

  UserRepository& repo_;
  AsyncUsers& users_;
  boost::asio::any_io_executor pool_;
  std::chrono::milliseconds interval_;
  bool quiet_;
};

}  // namespace user_service
