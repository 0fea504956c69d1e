// A small blocking HTTP/1.1 client for the end-to-end tests (Boost.Beast): one
// keep-alive connection, opened again after an error, a read timeout.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace cacheaside_test {

/// One answer: status, body and headers.
struct HttpResponse {
  int status = 0;
  std::string body;
  boost::beast::http::fields headers;
  std::string get_header_value(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : std::string(it->value());
  }
};

/// An answer, or what went wrong on the way.
class HttpResult {
 public:
  HttpResult(HttpResponse r) : response_(std::move(r)) {}
  explicit HttpResult(std::string error) : error_(std::move(error)) {}
  explicit operator bool() const { return response_.has_value(); }
  const HttpResponse* operator->() const { return &*response_; }
  const HttpResponse& operator*() const { return *response_; }
  const std::string& error() const { return error_; }

 private:
  std::optional<HttpResponse> response_;
  std::string error_;
};

class HttpClient {
 public:
  HttpClient(std::string host, int port, int read_timeout_s = 10)
      : host_(std::move(host)), port_(port), timeout_s_(read_timeout_s) {}

  HttpResult Get(const std::string& path) { return send("GET", path, std::nullopt); }
  HttpResult Delete(const std::string& path) { return send("DELETE", path, std::nullopt); }
  HttpResult Put(const std::string& path, const std::string& body, const std::string& type) {
    return send("PUT", path, body, type);
  }
  HttpResult Post(const std::string& path, const std::string& body, const std::string& type) {
    return send("POST", path, body, type);
  }
  HttpResult Patch(const std::string& path, const std::string& body, const std::string& type) {
    return send("PATCH", path, body, type);
  }

 private:
  HttpResult send(const char* method, const std::string& path,
                  const std::optional<std::string>& body, const std::string& type = "") {
    namespace http = boost::beast::http;
    try {
      if (!socket_) connect();
      http::request<http::string_body> req{http::string_to_verb(method), path, 11};
      req.method_string(method);
      req.set(http::field::host, host_);
      if (body) {
        req.set(http::field::content_type, type);
        req.body() = *body;
        req.prepare_payload();
      }
      http::write(*socket_, req);
      http::response_parser<http::string_body> parser;
      parser.body_limit(64u << 20);
      if (std::string(method) == "HEAD") parser.skip(true);
      http::read(*socket_, buffer_, parser);
      auto& res = parser.get();
      HttpResponse out;
      out.status = static_cast<int>(res.result_int());
      out.body = std::move(res.body());
      for (const auto& f : res) out.headers.insert(f.name_string(), f.value());
      if (!res.keep_alive()) close();
      return out;
    } catch (const std::exception& e) {
      close();  // the next request opens a new connection
      return HttpResult(std::string(e.what()));
    }
  }

  void connect() {
    socket_ = std::make_unique<boost::asio::ip::tcp::socket>(io_);
    boost::asio::ip::tcp::resolver resolver(io_);
    boost::asio::connect(*socket_, resolver.resolve(host_, std::to_string(port_)));
    timeval tv{timeout_s_, 0};
    ::setsockopt(socket_->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(socket_->native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    socket_->set_option(boost::asio::ip::tcp::no_delay(true));
    buffer_.clear();
  }

  void close() {
    if (!socket_) return;
    boost::system::error_code ec;
    socket_->close(ec);
    socket_.reset();
  }

  boost::asio::io_context io_;
  std::string host_;
  int port_;
  int timeout_s_;
  std::unique_ptr<boost::asio::ip::tcp::socket> socket_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace cacheaside_test
