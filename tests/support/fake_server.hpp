// A scripted TCP server on a loopback port: for each request line it receives it
// answers what the script says, optionally a byte at a time. For replies real
// memcached never sends (garbage, another request's reply, a trickle).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace cacheaside_test {

class FakeServer {
 public:
  /// Answers a request line (without CRLF; a value line of ms is not passed on).
  using Script = std::function<std::string(const std::string& request)>;

  explicit FakeServer(Script script, bool trickle = false)
      : script_(std::move(script)), trickle_(trickle) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0)
      throw std::runtime_error("FakeServer: cannot listen");
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  std::string config() const { return "--SERVER=127.0.0.1:" + std::to_string(port_); }
  /// Connections accepted so far.
  int connections() const { return connections_; }

 private:
  bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 20) > 0;
  }

  void serve() {
    while (!stop_) {
      if (!readable(listen_fd_)) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      talk(fd);
      ::close(fd);
    }
  }

  // One connection until the client closes it (or the server stops).
  void talk(int fd) {
    std::string in;
    std::size_t skip = 0;  // value bytes of an ms still to come
    while (!stop_) {
      if (!readable(fd)) continue;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<std::size_t>(n));
      for (;;) {
        if (skip) {
          if (in.size() < skip) break;
          in.erase(0, skip);
          skip = 0;
        }
        auto eol = in.find("\r\n");
        if (eol == std::string::npos) break;
        std::string line = in.substr(0, eol);
        in.erase(0, eol + 2);
        if (line.rfind("ms ", 0) == 0) {  // "ms <key> <len> ...": skip the value too
          auto a = line.find(' ', 3);
          skip = std::stoul(line.substr(a + 1)) + 2;
        }
        std::string out = script_(line);
        for (std::size_t i = 0; i < out.size();) {
          std::size_t k = trickle_ ? 1 : out.size() - i;
          if (::send(fd, out.data() + i, k, MSG_NOSIGNAL) <= 0) return;
          i += k;
          if (trickle_) std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
      }
    }
  }

  Script script_;
  bool trickle_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

/// The opaque token ("O<n>") of a meta request line, with its letter; "" if none.
inline std::string opaque_of(const std::string& request) {
  auto p = request.find(" O");
  if (p == std::string::npos) return "";
  auto e = request.find(' ', p + 1);
  return request.substr(p + 1, e == std::string::npos ? std::string::npos : e - p - 1);
}

}  // namespace cacheaside_test
