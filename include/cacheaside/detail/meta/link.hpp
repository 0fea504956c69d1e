// What a new connection goes through before its first request, and how its bytes
// are carried after (internal): the TLS handshake, then memcached's ASCII
// authentication (a `set` carrying "user password", answered STORED before
// anything else is sent). No I/O here: the blocking and the async connection
// move the bytes, so both follow the same rules.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "config.hpp"
#include "tls_session.hpp"

namespace cacheaside::detail {

/// Why connections of one store failed before their first request.
struct MetaLinkStats {
  std::atomic<std::uint64_t> handshakes{0};     ///< TLS handshakes completed
  std::atomic<std::uint64_t> tls_failures{0};   ///< handshakes refused or broken
  std::atomic<std::uint64_t> auth_failures{0};  ///< credentials refused, or no STORED

  void count_handshake() { handshakes.fetch_add(1, std::memory_order_relaxed); }
  void failed(bool tls, const std::string& why) {
    (tls ? tls_failures : auth_failures).fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = why;
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }
  /// The public form (MetaStore's and AsyncMetaStore's connection_stats()).
  ConnectionStats snapshot() const {
    return {handshakes.load(), tls_failures.load(), auth_failures.load(), last_error()};
  }

 private:
  mutable std::mutex mu_;
  std::string last_error_;
};

/// One store's settings for its new connections.
struct MetaLinkSettings {
  std::shared_ptr<TlsConnector> tls;  ///< null: plaintext
  std::string auth;                   ///< the credentials' request; empty: none
  std::shared_ptr<MetaLinkStats> stats = std::make_shared<MetaLinkStats>();

  /// Throws Error when TLS is asked for and cannot be set up.
  static MetaLinkSettings from(const MetaConfig& c) {
    MetaLinkSettings s;
    s.tls = make_tls_connector(c.tls);
    if (c.authenticates()) {
      // Expired at once (exptime -1): a server without -Y stores nothing readable.
      std::string body = c.username + " " + c.password;
      s.auth = "set cacheaside_auth 0 -1 " + std::to_string(body.size()) + "\r\n" + body + "\r\n";
    }
    return s;
  }

  /// Nothing to do before the first request.
  bool plain() const { return !tls && auth.empty(); }

  /// Request bytes a connection writes before every reply to them is in.
  /// memcached before 1.6.39 stops reading a TLS connection whose pipelined
  /// storage commands pass about 16 KiB in one go (the rest waits inside its TLS
  /// buffer, where its event loop never looks); one TLS record's worth at a
  /// time is always read whole. Plaintext: no bound.
  std::size_t write_window() const {
    return tls ? tls_window : std::numeric_limits<std::size_t>::max();
  }
  static constexpr std::size_t tls_window = 16000;
};

/// One connection's link: set up, then (TLS) sealing and opening its bytes.
class MetaLink {
 public:
  enum class State { setup, ready, failed };

  MetaLink(const MetaLinkSettings& s, const std::string& host) : stats_(s.stats), auth_(s.auth) {
    if (s.tls) tls_ = s.tls->session(host);
  }

  /// The first bytes to send (appended to wire).
  State start(std::string& wire) {
    if (tls_) {
      step_ = Step::handshake;
      return shake(wire);
    }
    return authenticate(wire);
  }

  /// Bytes that arrived during setup; what to send next is appended to wire.
  State received(const char* data, std::size_t n, std::string& wire) {
    if (state_ != State::setup) return state_;
    if (!tls_) {
      reply_.append(data, n);
      return judge();
    }
    tls_->feed(data, n);
    if (step_ == Step::handshake) {
      shake(wire);
      if (step_ == Step::handshake || state_ != State::setup) return state_;
    }
    char buf[512];
    for (;;) {
      long got = tls_->read(buf, sizeof buf);
      if (got < 0) return fail(true, "TLS: " + tls_->error());
      if (got == 0) break;
      reply_.append(buf, static_cast<std::size_t>(got));
      if (reply_.size() > 4096) break;
    }
    tls_->drain(wire);
    return judge();
  }

  /// The server closed the connection during setup.
  State closed() {
    if (state_ != State::setup) return state_;
    if (step_ == Step::handshake)
      return fail(true,
                  "TLS: the server closed the connection "
                  "during the handshake (does it speak TLS?)");
    return fail(false, "memcached closed the connection during authentication");
  }

  State state() const { return state_; }
  const std::string& error() const { return error_; }
  /// What failed, for a cache's event (the details are in MetaLinkStats).
  const char* failure() const { return failure_; }

  /// TLS: the session for the data path (null in plaintext).
  TlsSession* tls() { return tls_.get(); }

  /// TLS: plaintext arrived after set-up.
  void answered() { answered_ = true; }

  /// TLS: the session ended after set-up. An alert (a record that does not
  /// verify), or a close before any reply (TLS 1.3 servers refuse a client
  /// certificate only after the client's handshake is done) counts as a TLS
  /// failure; a session closed in order, or a socket closed after replies, not.
  void ended(bool socket_closed) {
    if (!socket_closed && !tls_->closed_in_order()) {
      stats_->failed(true, "TLS: " + tls_->error());
    } else if (socket_closed && !answered_) {
      stats_->failed(true,
                     "TLS: the server closed the connection after the handshake, before any "
                     "reply (does it require a client certificate?)");
    }
    answered_ = true;  // told once
  }

 private:
  enum class Step { none, handshake, auth };

  State shake(std::string& wire) {
    TlsSession::Progress p = tls_->handshake();
    tls_->drain(wire);
    if (p == TlsSession::Progress::failed) return fail(true, "TLS handshake: " + tls_->error());
    if (p == TlsSession::Progress::more) return state_;
    stats_->count_handshake();
    if (auth_.empty()) return state_ = State::ready;
    step_ = Step::auth;
    if (!tls_->write(auth_.data(), auth_.size())) return fail(true, "TLS: " + tls_->error());
    tls_->drain(wire);
    return state_;
  }

  State authenticate(std::string& wire) {
    if (auth_.empty()) return state_ = State::ready;
    step_ = Step::auth;
    wire += auth_;
    return state_;
  }

  // The answer to the credentials: STORED and nothing else.
  // Called in the auth step only: before it, received() has returned.
  State judge() {
    std::size_t eol = reply_.find("\r\n");
    if (eol == std::string::npos) {
      if (reply_.size() > 1024)
        return fail(false, "memcached's answer to authentication is not a line");
      return state_;
    }
    std::string_view line(reply_.data(), eol);
    if (line == "STORED" && reply_.size() == eol + 2) return state_ = State::ready;
    if (line.rfind("CLIENT_ERROR", 0) == 0)
      return fail(false,
                  "memcached refused the credentials (" + std::string(line.substr(0, 200)) + ")");
    return fail(false,
                "unexpected answer to authentication: '" + std::string(line.substr(0, 200)) + "'");
  }

  State fail(bool tls, std::string why) {
    error_ = std::move(why);
    failure_ = tls ? "connection refused at TLS set-up" : "memcached refused the credentials";
    stats_->failed(tls, error_);
    return state_ = State::failed;
  }

  std::shared_ptr<MetaLinkStats> stats_;
  std::string auth_;
  std::unique_ptr<TlsSession> tls_;
  Step step_ = Step::none;
  State state_ = State::setup;
  bool answered_ = false;
  std::string reply_;
  std::string error_;
  const char* failure_ = nullptr;
};

}  // namespace cacheaside::detail
