// The HTTP/1.1 server of the service on Boost.Beast: one io_context per core, each
// connection a coroutine on one of them, keep-alive, bounded bodies and reads.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "async_users.hpp"

namespace user_service {

struct HttpOptions {
  std::size_t max_body = 1 << 20;  ///< larger request bodies get 413
  bool log = true;                 ///< a line per request on stdout
  std::chrono::seconds idle{30};   ///< a connection silent this long is closed
  std::chrono::seconds linger{2};  ///< what a refused body may still send before the close
};

class HttpServer {
 public:
  /// Listens on `endpoint` (backlog SOMAXCONN); connections go round-robin to `contexts`.
  /// Throws boost::system::system_error when the address cannot be bound.
  HttpServer(std::vector<boost::asio::io_context*> contexts,
             const boost::asio::ip::tcp::endpoint& endpoint, AsyncUsers& users,
             HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Starts accepting (on the first context).
  void start();
  /// Stops accepting; the connections open now end with their next idle timeout or
  /// when their io_context stops.
  void stop();

  struct State;  ///< the listener and what the connections share (http_server.cpp)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace user_service
