// One multiplexed connection to a memcached server over Asio (internal): the
// MetaMux's bytes moved by a socket (through its MetaLink: TLS, authentication),
// a read while replies are due, one write at a time carrying everything queued
// meanwhile, and one timer for the deadlines. Everything here runs on the
// store's strand.
#pragma once

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../../store.hpp"
#include "../meta/config.hpp"
#include "../meta/link.hpp"
#include "../meta/mux.hpp"

namespace cacheaside::detail {

namespace asio = boost::asio;

/// A caller's ops in flight: told as each gets its status.
class AsyncMetaBatch {
 public:
  virtual ~AsyncMetaBatch() = default;
  std::size_t left = 0;  ///< ops without a status yet
  bool defer = true;     ///< completing inside the call that started it: post, never inline
  /// One more op has its status; the last completes the caller.
  void one_done() {
    if (--left == 0) complete();
  }
  /// One more op will never get a status (its io_context is gone): the last
  /// destroys the batch and its handler without running it, as Asio does.
  void abandon_one() {
    if (--left == 0) delete this;
  }

 protected:
  virtual void complete() = 0;
};

/// Tells each finished op's batch; `done` is emptied first, since a caller told
/// may start more work that adds to it. Its buffer is kept.
inline void finish_meta_ops(std::vector<MetaMux::Tag>& done) {
  std::vector<MetaMux::Tag> now;
  now.swap(done);
  for (MetaMux::Tag t : now) static_cast<AsyncMetaBatch*>(t)->one_done();
  now.clear();
  if (done.empty()) done.swap(now);
}

/// One server's health, shared by its connections: failure_limit failures in
/// a row (a connect that fails, a connection lost or silent with requests on it)
/// skip the server for the retry timeout.
struct AsyncMetaHealth {
  int failure_limit = StoreDefaults::failure_limit;
  std::chrono::seconds retry_timeout{StoreDefaults::retry_timeout};
  int failures = 0;
  std::chrono::steady_clock::time_point dead_until{};

  bool skipped(std::chrono::steady_clock::time_point now) const { return now < dead_until; }
  void succeeded() { failures = 0; }
  void failed(std::chrono::steady_clock::time_point now) {
    if (++failures < failure_limit) return;
    failures = 0;
    dead_until = now + retry_timeout;
  }
};

/// Counters of one store, written on its strand, read from anywhere.
struct AsyncMetaCounters {
  using N = std::atomic<std::uint64_t>;
  N writes{0};    ///< socket writes
  N requests{0};  ///< requests written
  N refused{0};   ///< ops refused by the bound on queued requests
  N connects{0};  ///< connections opened
  N lost{0};      ///< connections closed by an error, a bad reply or silence, with requests on them
  N timeouts{0};  ///< ops failed by their deadline
  static void add(N& n, std::uint64_t v = 1) { n.fetch_add(v, std::memory_order_relaxed); }
};

class AsyncMetaConn : public std::enable_shared_from_this<AsyncMetaConn> {
 public:
  using Strand = asio::strand<asio::any_io_executor>;
  using Time = std::chrono::steady_clock::time_point;

  AsyncMetaConn(Strand strand, const MetaServerAddress& address,
                std::chrono::milliseconds connect_timeout, MetaMuxLimits limits,
                const MetaLinkSettings& link, AsyncMetaHealth& health, AsyncMetaCounters& counters)
      : address_(address),
        connect_timeout_(connect_timeout),
        link_settings_(link),
        socket_(strand),
        resolver_(strand),
        connect_timer_(strand),
        watchdog_(strand),
        mux_(limits),
        health_(health),
        counters_(counters) {}

  AsyncMetaConn(const AsyncMetaConn&) = delete;
  AsyncMetaConn& operator=(const AsyncMetaConn&) = delete;

  /// Normally empty (the store's shut() failed every op). Ops are left only when
  /// the io_context stopped for good with them on board: theirs are abandoned.
  ~AsyncMetaConn() {
    done_.clear();
    mux_.lost(StoreStatus::unavailable, done_);
    mux_.fail_queued(StoreStatus::unavailable, done_);
    for (MetaMux::Tag t : done_) static_cast<AsyncMetaBatch*>(t)->abandon_one();
  }

  std::size_t load() const { return mux_.queued() + mux_.awaiting(); }

  /// Queues op for this server until `deadline`. False: the bound is reached.
  bool submit(MetaOp& op, AsyncMetaBatch* batch, Time deadline) {
    if (!mux_.submit(op, batch, deadline)) return false;
    arm_watchdog();
    if (state_ == State::open) {
      write();
    } else if (state_ == State::closed) {
      connect();
    }
    return true;
  }

  /// Opens the connection ahead of use (--POOL-MIN).
  void warm() {
    if (state_ == State::closed) connect();
  }

  /// Closes for good: every op here fails with `st`.
  void shut(StoreStatus st) {
    shut_ = true;
    drop(st, false);
    mux_.fail_queued(st, done_);
    finish_meta_ops(done_);
    watchdog_.cancel();
  }

 private:
  enum class State { closed, connecting, open };

  void connect() {
    if (shut_) return;
    state_ = State::connecting;
    std::uint64_t gen = ++gen_;
    connect_timer_.expires_after(connect_timeout_);
    connect_timer_.async_wait([self = shared_from_this(), gen](boost::system::error_code ec) {
      if (ec || gen != self->gen_ || self->state_ != State::connecting) return;
      self->connect_failed(StoreStatus::timeout);
    });
    if (resolved_.empty()) {
      resolver_.async_resolve(
          address_.host, std::to_string(address_.port),
          [self = shared_from_this(), gen](boost::system::error_code ec,
                                           asio::ip::tcp::resolver::results_type rs) {
            if (gen != self->gen_ || self->state_ != State::connecting) return;
            if (ec || rs.empty()) return self->connect_failed(StoreStatus::unavailable);
            for (const auto& e : rs) self->resolved_.push_back(e.endpoint());
            self->open(gen);
          });
    } else {
      open(gen);
    }
  }

  void open(std::uint64_t gen) {
    asio::async_connect(socket_, resolved_,
                        [self = shared_from_this(), gen](boost::system::error_code ec,
                                                         const asio::ip::tcp::endpoint&) {
                          if (gen != self->gen_ || self->state_ != State::connecting) return;
                          if (ec) return self->connect_failed(StoreStatus::unavailable);
                          self->opened();
                        });
  }

  void opened() {
    boost::system::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    socket_.non_blocking(true, ignored);  // alive() looks without waiting
    link_.reset();
    if (link_settings_.plain()) return ready();
    link_ = std::make_unique<MetaLink>(link_settings_, address_.host);
    setup_out_.clear();
    set_up(gen_, link_->start(setup_out_));
  }

  // The link's exchange, under the connect timer: what it has to send, then the
  // answer, until it is ready or refused.
  void set_up(std::uint64_t gen, MetaLink::State s) {
    if (!setup_out_.empty()) {
      asio::async_write(
          socket_, asio::buffer(setup_out_),
          [self = shared_from_this(), gen, s](boost::system::error_code ec, std::size_t) {
            if (gen != self->gen_ || self->state_ != State::connecting) return;
            self->setup_out_.clear();
            self->set_up(gen, ec ? self->link_->closed() : s);
          });
      return;
    }
    if (s == MetaLink::State::failed)
      return connect_failed(StoreStatus::unavailable, link_->failure());
    if (s == MetaLink::State::ready) {
      if (!link_->tls()) link_.reset();  // authenticated: plaintext from here on
      return ready();
    }
    setup_in_.resize(4096);
    socket_.async_read_some(asio::buffer(setup_in_), [self = shared_from_this(), gen](
                                                         boost::system::error_code ec,
                                                         std::size_t n) {
      if (gen != self->gen_ || self->state_ != State::connecting) return;
      self->set_up(gen, ec ? self->link_->closed()
                           : self->link_->received(self->setup_in_.data(), n, self->setup_out_));
    });
  }

  void ready() {
    connect_timer_.cancel();
    window_ = link_ ? link_settings_.write_window() : static_cast<std::size_t>(-1);
    state_ = State::open;
    AsyncMetaCounters::add(counters_.connects);
    write();
  }

  // Before a write on a connection nobody read from while it was idle: false when
  // the server closed it meanwhile (a restart: the ops go out on a new one
  // instead of failing) or said something unasked (counted as a failure). A
  // look, not a wait: the socket is non-blocking.
  bool alive() {
    if (reading_ || mux_.awaiting() > 0) return true;  // replies due: the read finds out
    char buf[512];
    for (;;) {
      boost::system::error_code ec;
      std::size_t n = socket_.read_some(asio::buffer(buf, link_ ? sizeof buf : 1), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) return true;
      if (!ec && link_) {  // TLS: session tickets are not a reply; plaintext is
        link_->tls()->feed(buf, n);
        long got = link_->tls()->read(buf, sizeof buf);
        if (got == 0) continue;
        if (got < 0) return false;  // closed
      } else if (ec == asio::error::eof || ec == asio::error::connection_reset) {
        return false;
      }
      health_.failed(std::chrono::steady_clock::now());
      return false;
    }
  }

  // Nothing queued can be sent: they fail to their callers' loaders.
  void connect_failed(StoreStatus st, const char* why = nullptr) {
    boost::system::error_code ignored;
    socket_.close(ignored);
    connect_timer_.cancel();
    state_ = State::closed;
    ++gen_;
    health_.failed(std::chrono::steady_clock::now());
    mux_.fail_queued(st, done_, why);
    finish_meta_ops(done_);
  }

  void write() {
    if (writing_ || state_ != State::open || mux_.queued() == 0) return;
    if (link_ && mux_.awaiting() > 0) return;  // TLS: a window at a time (MetaLinkSettings)
    if (!alive()) return drop(StoreStatus::unavailable, true);  // nothing written: reconnects
    out_.clear();
    std::size_t before = mux_.queued();
    mux_.take_write(out_, window_);
    AsyncMetaCounters::add(counters_.requests, before - mux_.queued());
    AsyncMetaCounters::add(counters_.writes);
    std::string* wire = &out_;
    if (link_) {
      wire_.clear();
      if (!link_->tls()->write(out_.data(), out_.size())) return drop(StoreStatus::error, true);
      link_->tls()->drain(wire_);
      wire = &wire_;
    }
    read();
    writing_ = true;
    asio::async_write(
        socket_, asio::buffer(*wire),
        [self = shared_from_this(), gen = gen_](boost::system::error_code ec, std::size_t) {
          if (gen != self->gen_) return;
          self->writing_ = false;
          if (ec) {
            if (self->link_) self->link_->ended(true);
            return self->drop(StoreStatus::error, true);
          }
          self->write();
        });
  }

  // Reads while replies are awaited, and only then: an idle connection holds no
  // work, so io_context::run() returns once every call has completed.
  void read() {
    if (reading_ || mux_.awaiting() == 0) return;
    reading_ = true;
    std::size_t room = 0;
    char* at = link_ ? nullptr : mux_.read_space(16384, room);
    if (link_) {
      cipher_.resize(16384 + 256);  // one TLS record
      at = &cipher_[0];
      room = cipher_.size();
    }
    socket_.async_read_some(
        asio::buffer(at, room),
        [self = shared_from_this(), gen = gen_](boost::system::error_code ec, std::size_t n) {
          if (gen != self->gen_) return;
          self->reading_ = false;
          if (ec) {
            if (self->link_) self->link_->ended(true);
            return self->drop(StoreStatus::error, true);
          }
          bool ok = self->link_ ? self->open_records(n) : self->mux_.received(n, self->done_);
          if (!self->done_.empty()) self->health_.succeeded();
          if (!ok) return self->drop(StoreStatus::error, true);  // out of step: nothing is trusted
          finish_meta_ops(self->done_);
          if (gen != self->gen_) return;  // a caller's failure closed it meanwhile
          self->read();
          self->write();  // TLS: the next window, once every reply is in
        });
  }

  // TLS: n bytes from the wire, every byte of plaintext they hold to the mux.
  bool open_records(std::size_t n) {
    link_->tls()->feed(cipher_.data(), n);
    for (;;) {
      std::size_t room = 0;
      char* at = mux_.read_space(16384, room);
      long got = link_->tls()->read(at, room);
      if (got < 0) {
        link_->ended(false);
        return false;
      }
      if (got == 0) return true;
      link_->answered();
      if (!mux_.received(static_cast<std::size_t>(got), done_)) return false;
    }
  }

  // The connection is gone: what was written fails with st; what was not goes
  // out on a new connection.
  void drop(StoreStatus st, bool reconnect) {
    if (state_ == State::closed) return;
    ++gen_;
    boost::system::error_code ignored;
    socket_.close(ignored);
    connect_timer_.cancel();
    state_ = State::closed;
    writing_ = reading_ = false;
    if (mux_.awaiting() > 0) {
      AsyncMetaCounters::add(counters_.lost);
      health_.failed(std::chrono::steady_clock::now());
    }
    mux_.lost(st, done_);
    if (reconnect && mux_.queued() > 0) {
      if (health_.skipped(std::chrono::steady_clock::now())) {
        mux_.fail_queued(StoreStatus::unavailable, done_);
      } else {
        connect();
      }
    }
    finish_meta_ops(done_);
  }

  // One timer for every deadline here: they come in the order ops were queued.
  void arm_watchdog() {
    if (watching_) return;
    Time next = mux_.next_deadline();
    if (next == Time::max()) return;
    watching_ = true;
    watchdog_.expires_at(next);
    watchdog_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      self->watching_ = false;
      if (ec || self->shut_) return;
      std::size_t before = self->done_.size();
      bool frozen = self->mux_.expire(std::chrono::steady_clock::now(), self->done_);
      AsyncMetaCounters::add(self->counters_.timeouts, self->done_.size() - before);
      if (frozen) {
        AsyncMetaCounters::add(self->counters_.timeouts, self->mux_.awaiting());
        self->drop(StoreStatus::timeout, true);  // a server that does not answer
      }
      finish_meta_ops(self->done_);
      self->arm_watchdog();
    });
  }

  MetaServerAddress address_;
  std::chrono::milliseconds connect_timeout_;
  MetaLinkSettings link_settings_;
  std::unique_ptr<MetaLink> link_;  // TLS: the session; plaintext: none
  std::size_t window_ = static_cast<std::size_t>(-1);
  std::string setup_out_, setup_in_, cipher_, wire_;
  asio::ip::tcp::socket socket_;
  asio::ip::tcp::resolver resolver_;
  std::vector<asio::ip::tcp::endpoint> resolved_;
  asio::steady_timer connect_timer_;
  asio::steady_timer watchdog_;
  MetaMux mux_;
  AsyncMetaHealth& health_;
  AsyncMetaCounters& counters_;
  std::string out_;
  std::vector<MetaMux::Tag> done_;
  State state_ = State::closed;
  std::uint64_t gen_ = 0;  // handlers of an older connection find it changed
  bool writing_ = false;
  bool reading_ = false;
  bool watching_ = false;
  bool shut_ = false;
};

}  // namespace cacheaside::detail
