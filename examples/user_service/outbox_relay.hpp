// The outbox relay: the changes the database's triggers recorded (UserRepository::
// changes) are invalidated through the caches (AsyncUsers::apply_changes), and their
// rows removed once memcached confirmed them: cacheaside::OutboxRelay over the SQLite
// outbox, at least every `interval`. It catches what the request path's own
// invalidation cannot: writes by other programs, and a writer that died between its
// commit and its invalidation. Several instances may relay one outbox: invalidating
// twice is harmless.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cacheaside/outbox_relay.hpp>
#include <chrono>
#include <functional>
#include <memory>

#include "async_users.hpp"
#include "repository.hpp"

namespace user_service {

class OutboxRelay {
 public:
  /// The database work runs on `pool`.
  OutboxRelay(UserRepository& repo, AsyncUsers& users, boost::asio::any_io_executor pool,
              std::chrono::milliseconds interval, bool quiet);
  ~OutboxRelay();

  /// Starts the loop on `io`; it runs until the io_context stops. ready() is called
  /// once the outbox was relayed for the first time (or could not be).
  void start(boost::asio::any_io_executor io, std::function<void()> ready);

 private:
  class SqliteOutbox;

  UserRepository& repo_;
  AsyncUsers& users_;
  boost::asio::any_io_executor pool_;
  std::chrono::milliseconds interval_;
  bool quiet_;
  bool failing_ = false;  // on the io thread: a failure told, none since
  std::unique_ptr<cacheaside::OutboxRelay<long long>> relay_;
};

}  // namespace user_service
