// One TCP connection to a memcached server: non-blocking POSIX socket, every
// wait bounded by poll() against a deadline, set up (TLS, authentication) by its
// MetaLink before the first request (internal).
#pragma once

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "../../store.hpp"
#include "link.hpp"

namespace cacheaside::detail {

class MetaConnection {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  MetaConnection(const MetaConnection&) = delete;
  MetaConnection& operator=(const MetaConnection&) = delete;
  ~MetaConnection() {
    if (fd_ >= 0) ::close(fd_);
  }

  /// Connects and sets up within `timeout`: ok, timeout, or unavailable
  /// (refused, unresolvable, TLS or authentication refused: link.stats says why).
  static std::unique_ptr<MetaConnection> open(const std::string& host, const std::string& port,
                                              std::chrono::milliseconds timeout, StoreStatus& st,
                                              const MetaLinkSettings* link = nullptr,
                                              const char** why = nullptr) {
    Deadline deadline = std::chrono::steady_clock::now() + timeout;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    st = StoreStatus::unavailable;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) return nullptr;
    std::unique_ptr<MetaConnection> conn;
    for (addrinfo* a = res; a && !conn; a = a->ai_next) {
      int fd =
          ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        StoreStatus w = wait(fd, POLLOUT, deadline);
        int err = 0;
        socklen_t len = sizeof err;
        if (w == StoreStatus::ok && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err == 0) {
          rc = 0;
        } else if (w == StoreStatus::timeout) {
          st = StoreStatus::timeout;
        }
      }
      if (rc == 0) {
        conn.reset(new MetaConnection(fd));
        st = StoreStatus::ok;
      } else {
        ::close(fd);
      }
    }
    ::freeaddrinfo(res);
    if (conn && link && !link->plain()) {
      st = conn->set_up(*link, host, deadline);
      if (st != StoreStatus::ok) {
        if (why) *why = conn->link_->failure();
        conn.reset();
      }
    }
    return conn;
  }

  /// Requests to send; flush() sends them.
  std::string out;

  /// Sends `out` whole. While the server does not take more, what it already
  /// answered is read aside, so a long pipeline cannot deadlock on full buffers.
  StoreStatus flush(Deadline deadline) {
    const std::string* bytes = &out;
    if (TlsSession* tls = link_ ? link_->tls() : nullptr) {
      wire_.clear();
      if (!tls->write(out.data(), out.size())) return fail(StoreStatus::error);
      tls->drain(wire_);
      bytes = &wire_;
    }
    StoreStatus st = send_all(*bytes, deadline);
    if (st == StoreStatus::ok) out.clear();
    return st;
  }

  /// TLS: requests written before every reply to them is in (see MetaLinkSettings).
  std::size_t write_window() const { return window_; }

  /// The next line, without "\r\n"; valid until the next read.
  StoreStatus read_line(std::string_view& line, Deadline deadline) {
    for (;;) {
      std::size_t eol = in_.find("\r\n", scan_);
      if (eol != std::string::npos) {
        line = std::string_view(in_).substr(pos_, eol - pos_);
        pos_ = eol + 2;
        scan_ = pos_;
        return StoreStatus::ok;
      }
      if (in_.size() - pos_ > max_line) return fail(StoreStatus::error);
      scan_ = in_.size() > pos_ ? in_.size() - 1 : pos_;
      StoreStatus st = more(deadline);
      if (st != StoreStatus::ok) return st;
    }
  }

  /// The next n bytes, which must end in "\r\n" (not part of them).
  StoreStatus read_value(std::size_t n, std::string& dst, Deadline deadline) {
    while (in_.size() - pos_ < n + 2) {
      StoreStatus st = more(deadline);
      if (st != StoreStatus::ok) return st;
    }
    if (in_.compare(pos_ + n, 2, "\r\n") != 0) return fail(StoreStatus::error);
    dst.assign(in_, pos_, n);
    pos_ += n + 2;
    scan_ = pos_;
    return StoreStatus::ok;
  }

  /// Nothing half-read and nothing failed: fit to go back to the pool.
  bool clean() const { return !broken_ && pos_ == in_.size() && out.empty(); }
  /// Broken: closed, timed out, or out of step with the server.
  bool broken() const { return broken_; }
  /// The server closed or reset the connection (as opposed to a timeout).
  bool closed_by_peer() const { return peer_closed_; }
  /// Some reply bytes arrived since the last reset_received().
  bool received() const { return received_; }
  void reset_received() { received_ = false; }
  /// Marks it unusable (the caller found the replies out of step).
  void poison() { broken_ = true; }

 private:
  static constexpr std::size_t max_line = 8192;  // longer is not a reply line

  explicit MetaConnection(int fd) : fd_(fd) {}

  StoreStatus fail(StoreStatus st) {
    broken_ = true;
    if (st == StoreStatus::unavailable && link_ && link_->tls()) link_->ended(true);
    return st;
  }

  // Sends buf whole. While the server does not take more, what it already
  // answered is read aside, so a long pipeline cannot deadlock on full buffers.
  StoreStatus send_all(const std::string& buf, Deadline deadline) {
    std::size_t sent = 0;
    while (sent < buf.size()) {
      ssize_t n = ::send(fd_, buf.data() + sent, buf.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        short ev = 0;
        StoreStatus w = wait(fd_, POLLOUT | POLLIN, deadline, &ev);
        if (w != StoreStatus::ok) return fail(w);
        if ((ev & POLLIN) && fill() == StoreStatus::unavailable)
          return fail(StoreStatus::unavailable);
        continue;
      }
      return fail(StoreStatus::unavailable);
    }
    return StoreStatus::ok;
  }

  // The link's exchange before the first request, within the connect deadline.
  StoreStatus set_up(const MetaLinkSettings& settings, const std::string& host, Deadline deadline) {
    link_ = std::make_unique<MetaLink>(settings, host);
    std::string wire;
    MetaLink::State s = link_->start(wire);
    char buf[4096];
    for (;;) {
      if (!wire.empty()) {
        StoreStatus st = send_all(wire, deadline);
        if (st != StoreStatus::ok) return st;
        wire.clear();
      }
      if (s == MetaLink::State::ready) break;
      if (s == MetaLink::State::failed) return StoreStatus::unavailable;
      StoreStatus w = wait(fd_, POLLIN, deadline);
      if (w != StoreStatus::ok) return w;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      s = n > 0 ? link_->received(buf, static_cast<std::size_t>(n), wire) : link_->closed();
    }
    if (link_->tls()) {
      window_ = settings.write_window();
      cipher_.resize(16384 + 256);  // one TLS record
    } else {
      link_.reset();  // authenticated: plaintext from here on
    }
    return StoreStatus::ok;
  }

  static StoreStatus wait(int fd, short events, Deadline deadline, short* got = nullptr) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return StoreStatus::timeout;
      pollfd p{fd, events, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) return StoreStatus::unavailable;
      if (rc == 0) {
        if (std::chrono::steady_clock::now() >= deadline) return StoreStatus::timeout;
        continue;
      }
      if (got) *got = p.revents;
      if (p.revents & (POLLERR | POLLNVAL)) return StoreStatus::unavailable;
      return StoreStatus::ok;  // POLLHUP: the read sees EOF
    }
  }

  // Waits for and reads more bytes.
  StoreStatus more(Deadline deadline) {
    if (broken_) return StoreStatus::unavailable;
    StoreStatus st = fill();
    if (st == StoreStatus::timeout) {  // nothing yet: wait
      st = wait(fd_, POLLIN, deadline);
      if (st != StoreStatus::ok) return fail(st);
      st = fill();
      if (st == StoreStatus::timeout) return StoreStatus::ok;  // spurious wakeup: loop
    }
    return st == StoreStatus::ok ? st : fail(st);
  }

  // One non-blocking recv into the buffer: ok (bytes), timeout (none yet), or
  // unavailable (closed, reset).
  StoreStatus fill() {
    if (pos_ > 0 && pos_ == in_.size()) {
      in_.clear();
      pos_ = scan_ = 0;
    } else if (pos_ > 65536 && pos_ * 2 > in_.size()) {
      in_.erase(0, pos_);
      scan_ -= pos_;
      pos_ = 0;
    }
    std::size_t old = in_.size();
    std::size_t room = old - pos_ < 16384 ? 16384 : old - pos_;
    in_.resize(old + room);
    if (link_) return fill_tls(old, room);
    for (;;) {
      ssize_t n = ::recv(fd_, &in_[old], room, 0);
      if (n > 0) {
        in_.resize(old + static_cast<std::size_t>(n));
        received_ = true;
        return StoreStatus::ok;
      }
      in_.resize(old);
      if (n < 0 && errno == EINTR) {
        in_.resize(old + room);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return StoreStatus::timeout;
      peer_closed_ = true;
      return StoreStatus::unavailable;
    }
  }

  // fill() over TLS: plaintext the session holds first, then what the socket has.
  StoreStatus fill_tls(std::size_t old, std::size_t room) {
    TlsSession& tls = *link_->tls();
    long got = tls.read(&in_[old], room);
    while (got == 0) {
      ssize_t n = ::recv(fd_, &cipher_[0], cipher_.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {  // closed or reset: the session did not end, the socket did
        in_.resize(old);
        peer_closed_ = true;
        return StoreStatus::unavailable;
      }
      tls.feed(cipher_.data(), static_cast<std::size_t>(n));
      got = tls.read(&in_[old], room);
    }
    if (got > 0) {
      in_.resize(old + static_cast<std::size_t>(got));
      received_ = true;
      link_->answered();
      return StoreStatus::ok;
    }
    in_.resize(old);
    if (got == 0) return StoreStatus::timeout;
    link_->ended(false);
    peer_closed_ = true;
    return StoreStatus::unavailable;
  }

  int fd_ = -1;
  std::unique_ptr<MetaLink> link_;  // TLS: the session; plaintext: none
  std::size_t window_ = static_cast<std::size_t>(-1);
  std::string wire_;
  std::string cipher_;  // TLS: bytes from the socket
  std::string in_;
  std::size_t pos_ = 0;   // first unread byte
  std::size_t scan_ = 0;  // where to look for the next "\r\n"
  bool broken_ = false;
  bool peer_closed_ = false;
  bool received_ = false;
};

}  // namespace cacheaside::detail
