#include "http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>

#include "routes.hpp"

namespace user_service {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::use_awaitable;

struct HttpServer::State {
  std::vector<asio::io_context*> contexts;
  tcp::acceptor acceptor;
  AsyncUsers& users;
  HttpOptions opt;
  std::size_t next = 0;

  State(std::vector<asio::io_context*> c, const tcp::endpoint& ep, AsyncUsers& u, HttpOptions o)
      : contexts(std::move(c)), acceptor(*contexts.front()), users(u), opt(o) {
    acceptor.open(ep.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);
  }
};

namespace {

constexpr auto tuple = asio::as_tuple(use_awaitable);

std::mutex g_log_mutex;

void log_line(const Request& req, const std::string& path, unsigned status,
              const std::string& trace, std::chrono::steady_clock::time_point t0) {
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::string method(req.method_string());
  char line[640];
  std::snprintf(line, sizeof line, "%s %.256s %u %.256s %.2f ms\n", method.c_str(), path.c_str(),
                status, trace.empty() ? "-" : trace.c_str(), us / 1000.0);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::fputs(line, stdout);
  std::fflush(stdout);
}

bool says_length(const Request& req) { return req.has_content_length() || req.chunked(); }

bool has_body_method(const Request& req) {
  auto m = req.method();
  return m == http::verb::post || m == http::verb::put || m == http::verb::patch;
}

// After a refusal with a body left unread: stop sending, then read what the client
// still sends for a little while, so that it sees the answer instead of a reset.
Task<void> linger_close(beast::tcp_stream& stream, std::chrono::seconds linger) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(linger);
  char sink[16384];
  for (;;) {
    auto [e, n] = co_await stream.async_read_some(asio::buffer(sink), tuple);
    if (e) break;
  }
  stream.socket().close(ec);
}

Task<void> session(tcp::socket socket, std::shared_ptr<HttpServer::State> s) {
  beast::tcp_stream stream(std::move(socket));
  beast::error_code ignored;
  stream.socket().set_option(tcp::no_delay(true), ignored);
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(s->opt.max_body);
    stream.expires_after(s->opt.idle);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, tuple);
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted)
      co_return;
    auto t0 = std::chrono::steady_clock::now();
    Request& req = parser.get();
    unsigned refused = 0;
    bool unread_body = false;
    if (ec == http::error::body_limit) {
      refused = 413, unread_body = true;
    } else if (ec) {
      refused = 400, unread_body = true;  // the stream is out of step now
    } else if (has_body_method(req) && !says_length(req)) {
      refused = 411;  // nothing follows the header: the connection stays usable
    } else if (!parser.is_done()) {
      if (req[http::field::expect] == "100-continue") {
        http::response<http::empty_body> go{http::status::continue_, req.version()};
        auto [we, wn] = co_await http::async_write(stream, go, tuple);
        if (we) co_return;
      }
      auto [re, rn] = co_await http::async_read(stream, buffer, parser, tuple);
      if (re == http::error::body_limit)
        refused = 413, unread_body = true;
      else if (re)
        co_return;  // closed or timed out mid-body: nobody to answer
    }
    RequestTrace trace;
    RequestTrace* traced = s->opt.log ? &trace : nullptr;
    Response res;
    if (refused) {
      res = refusal(req, refused);
    } else {
      try {
        res = co_await route(req, s->users, traced);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        res = refusal(req, 500);
      }
    }
    if (unread_body) res.keep_alive(false);
    if (s->opt.log) log_line(req, request_path(req), res.result_int(), trace.text(), t0);
    stream.expires_after(s->opt.idle);
    auto [we, wn] = co_await http::async_write(stream, res, tuple);
    if (we) co_return;
    if (unread_body) {
      co_await linger_close(stream, s->opt.linger);
      co_return;
    }
    if (!res.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

Task<void> accept_loop(std::shared_ptr<HttpServer::State> s) {
  for (;;) {
    asio::io_context& ctx = *s->contexts[s->next++ % s->contexts.size()];
    auto [ec, socket] = co_await s->acceptor.async_accept(ctx, tuple);
    if (ec == asio::error::operation_aborted || !s->acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE and the like: a pause, not a spin, before the next try.
      std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
      asio::steady_timer pause(s->acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(tuple);
      continue;
    }
    asio::co_spawn(ctx, session(std::move(socket), s), asio::detached);
  }
}

}  // namespace

HttpServer::HttpServer(std::vector<asio::io_context*> contexts, const tcp::endpoint& endpoint,
                       AsyncUsers& users, HttpOptions options)
    : state_(std::make_shared<State>(std::move(contexts), endpoint, users, options)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  asio::co_spawn(*state_->contexts.front(), accept_loop(state_), asio::detached);
}

void HttpServer::stop() {
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    beast::error_code ec;
    s->acceptor.close(ec);
  });
}

}  // namespace user_service
