// A TCP proxy between the library and a real memcached that fails on command:
// drop (a partition: bytes vanish both ways, connections stay open), delay,
// or reset (every connection, and each new one, is closed with RST). Real
// sockets: the library sees exactly what a bad network gives it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cacheaside_test {

class FaultProxy {
 public:
  enum class Mode { pass, drop, drop_replies, reset };

  /// Listens on a free loopback port and forwards to 127.0.0.1:upstream_port.
  explicit FaultProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 128) != 0)
      throw std::runtime_error("fault proxy: cannot listen");
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    if (::pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("fault proxy: pipe");
    thread_ = std::thread([this] { run(); });
  }

  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  ~FaultProxy() {
    stop_ = true;
    wake();
    thread_.join();
    for (auto& p : pairs_) close_pair(*p, false);
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  int port() const { return port_; }
  /// "--SERVER=127.0.0.1:<port>" plus extra options.
  std::string config(const std::string& extra = "") const {
    return "--SERVER=127.0.0.1:" + std::to_string(port_) + (extra.empty() ? "" : " " + extra);
  }

  /// Forward everything (after `delay`, if set).
  void pass() { set(Mode::pass); }
  /// A partition: whatever either side sends is lost, until `pass()`.
  void drop() { set(Mode::drop); }
  /// Requests still reach the server, its replies are lost, from the first
  /// request that contains `needle` (itself delivered) until `pass()`.
  void drop_replies_after(std::string needle) {
    std::lock_guard<std::mutex> lock(needle_mu_);
    needle_ = std::move(needle);
  }
  /// Close every connection with RST, and each new one, until `pass()`.
  void reset() { set(Mode::reset); }
  /// Forwarding delay, each way.
  void delay(std::chrono::milliseconds d) {
    delay_ms_ = static_cast<int>(d.count());
    wake();
  }
  /// Connections accepted so far.
  int accepted() const { return accepted_.load(); }
  /// Replies are kept (not lost) until `release_replies()`: a request stays in
  /// flight for as long as a test needs, with no timing involved.
  void hold_replies() {
    hold_ = true;
    wake();
  }
  void release_replies() {
    hold_ = false;
    wake();
  }
  /// Reads of client bytes so far (at least one per request that reached the proxy).
  int client_reads() const { return client_reads_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Chunk {
    std::string data;
    std::size_t off = 0;
    Clock::time_point due;
  };
  struct Pair {
    int fd[2];                 // 0: client, 1: upstream
    std::deque<Chunk> out[2];  // out[i]: bytes to write to fd[i]
    bool closed = false;
  };

  void set(Mode m) {
    mode_ = m;
    wake();
  }
  void wake() {
    char c = 1;
    (void)!::write(wake_[1], &c, 1);
  }

  static void close_fd(int fd, bool rst) {
    if (fd < 0) return;
    if (rst) {
      linger l{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(fd);
  }
  static void close_pair(Pair& p, bool rst) {
    if (p.closed) return;
    close_fd(p.fd[0], rst);
    close_fd(p.fd[1], rst);
    p.closed = true;
  }

  void accept_all() {
    for (;;) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;
      ++accepted_;
      if (mode_ == Mode::reset) {
        close_fd(c, true);
        continue;
      }
      int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(upstream_port_));
      if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close_fd(u, false);
        close_fd(c, true);  // upstream down: refuse as it would
        continue;
      }
      ::fcntl(u, F_SETFL, ::fcntl(u, F_GETFL) | O_NONBLOCK);
      int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto p = std::make_unique<Pair>();
      p->fd[0] = c;
      p->fd[1] = u;
      pairs_.push_back(std::move(p));
    }
  }

  // Reads what side i sent and queues it for the other side (or loses it).
  bool pump_in(Pair& p, int i) {
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(p.fd[i], buf, sizeof buf);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      if (i == 0) ++client_reads_;
      if (mode_ == Mode::drop || (mode_ == Mode::drop_replies && i == 1)) continue;
      p.out[1 - i].push_back(Chunk{std::string(buf, static_cast<std::size_t>(n)), 0,
                                   Clock::now() + std::chrono::milliseconds(delay_ms_.load())});
      if (i == 0) {
        std::lock_guard<std::mutex> lock(needle_mu_);
        if (!needle_.empty() && std::string_view(buf, static_cast<std::size_t>(n)).find(needle_) !=
                                    std::string_view::npos) {
          needle_.clear();
          mode_ = Mode::drop_replies;
        }
      }
    }
  }

  bool pump_out(Pair& p, int i) {
    if (i == 0 && hold_) return true;
    auto now = Clock::now();
    while (!p.out[i].empty() && p.out[i].front().due <= now) {
      Chunk& c = p.out[i].front();
      ssize_t n = ::write(p.fd[i], c.data.data() + c.off, c.data.size() - c.off);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      c.off += static_cast<std::size_t>(n);
      if (c.off < c.data.size()) return true;
      p.out[i].pop_front();
    }
    return true;
  }

  void run() {
    Mode seen = Mode::pass;
    while (!stop_) {
      Mode m = mode_;
      if (m != seen) {
        seen = m;
        for (auto& p : pairs_) {
          if (m == Mode::reset) close_pair(*p, true);
          if (m == Mode::drop) p->out[0].clear(), p->out[1].clear();
          if (m == Mode::drop_replies) p->out[0].clear();
        }
      }
      pairs_.erase(std::remove_if(pairs_.begin(), pairs_.end(),
                                  [](const std::unique_ptr<Pair>& p) { return p->closed; }),
                   pairs_.end());
      std::vector<pollfd> fds;
      fds.push_back({wake_[0], POLLIN, 0});
      fds.push_back({listen_fd_, POLLIN, 0});
      int timeout = -1;
      auto now = Clock::now();
      for (auto& p : pairs_) {
        for (int i = 0; i < 2; ++i) {
          short ev = POLLIN;
          if (!p->out[i].empty() && !(i == 0 && hold_)) {
            auto due = p->out[i].front().due;
            if (due <= now) {
              ev |= POLLOUT;
            } else {
              auto ms = std::chrono::ceil<std::chrono::milliseconds>(due - now).count();
              if (timeout < 0 || ms < timeout) timeout = static_cast<int>(ms);
            }
          }
          fds.push_back({p->fd[i], ev, 0});
        }
      }
      ::poll(fds.data(), fds.size(), timeout);
      if (fds[0].revents & POLLIN) {
        char buf[64];
        while (::read(wake_[0], buf, sizeof buf) > 0) {
        }
      }
      if (fds[1].revents & POLLIN) accept_all();
      std::size_t k = 2;
      for (std::size_t j = 0; j < pairs_.size() && k + 1 < fds.size(); ++j, k += 2) {
        Pair& p = *pairs_[j];
        bool ok = true;
        for (int i = 0; i < 2 && ok; ++i) {
          if (fds[k + i].revents & (POLLIN | POLLHUP | POLLERR)) ok = pump_in(p, i);
        }
        for (int i = 0; i < 2 && ok; ++i) ok = pump_out(p, i);
        if (!ok) close_pair(p, false);
      }
    }
  }

  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::atomic<Mode> mode_{Mode::pass};
  std::mutex needle_mu_;
  std::string needle_;  // arms drop_replies
  std::atomic<int> delay_ms_{0};
  std::atomic<int> accepted_{0};
  std::atomic<int> client_reads_{0};
  std::atomic<bool> hold_{false};
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Pair>> pairs_;  // the proxy thread's only
  std::thread thread_;
};

}  // namespace cacheaside_test
