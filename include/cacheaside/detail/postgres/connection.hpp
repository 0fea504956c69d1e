// One PostgreSQL connection, libpq in non-blocking mode on an Asio executor
// (internal): connect, one query at a time, notifications. libpq's socket is
// watched through a duplicate descriptor Asio waits on; no call here waits on the
// database. Every member runs on the executor given.
#pragma once

#include <libpq-fe.h>
#include <unistd.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cacheaside::detail {

namespace pg_asio = boost::asio;

/// The rows of a query's last result that had any (text, NULL as "").
using PgRows = std::vector<std::vector<std::string>>;

class PgConnection : public std::enable_shared_from_this<PgConnection> {
 public:
  /// error: "" when it went well.
  using Done = std::function<void(std::string error)>;
  using RowsDone = std::function<void(std::string error, PgRows rows)>;

  /// timeout bounds each connect and each query (a cut network answers nothing).
  PgConnection(pg_asio::any_io_executor ex, std::string conninfo, std::chrono::milliseconds timeout)
      : conninfo_(std::move(conninfo)), timeout_(timeout), socket_(ex), timer_(ex) {}
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;
  ~PgConnection() { drop(); }

  /// Notifications (LISTEN) as they arrive, between queries and during them.
  void on_notify(std::function<void(const std::string& channel, const std::string& payload)> f) {
    notify_ = std::move(f);
  }
  /// Told once when an open connection is lost (or times out) outside a call.
  void on_lost(std::function<void(const std::string&)> f) { lost_ = std::move(f); }

  bool open() const { return state_ == State::idle || state_ == State::busy; }

  /// Opens the connection.
  void async_connect(Done done) {
    conn_ = PQconnectStart(conninfo_.c_str());
    if (!conn_ || PQstatus(conn_) == CONNECTION_BAD) return fail_now(std::move(done), "connect");
    PQsetnonblocking(conn_, 1);
    // Notices and the server's goodbye would go to stderr: a library prints nothing.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    state_ = State::connecting;
    rows_done_ = [done = std::move(done)](std::string e, PgRows) { done(std::move(e)); };
    arm_timer();
    connect_step(PGRES_POLLING_WRITING);
  }

  /// Runs sql (one or more statements, the simple protocol: no parameters).
  void async_query(const std::string& sql, RowsDone done) {
    if (state_ != State::idle) return done("postgres: not connected", {});
    if (PQsendQuery(conn_, sql.c_str()) != 1) {
      std::string why = message("send");
      lose(why);
      return done(why, {});
    }
    state_ = State::busy;
    rows_done_ = std::move(done);
    rows_.clear();
    error_.clear();
    arm_timer();
    flush();
  }

  /// Closes it; a call in flight fails.
  void close() { lose("postgres: connection closed"); }

 private:
  enum class State { closed, connecting, idle, busy };

  std::string message(const char* what) const {
    std::string m = conn_ ? PQerrorMessage(conn_) : "out of memory";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return std::string("postgres ") + what + ": " + (m.empty() ? "failed" : m);
  }

  void fail_now(Done done, const char* what) {
    std::string why = message(what);
    drop();
    done(why);
  }

  // Watches libpq's current socket (it may change while connecting).
  bool watch() {
    int fd = PQsocket(conn_);
    if (fd < 0) return false;
    if (fd != watched_) {
      boost::system::error_code ec;
      socket_.close(ec);
      int copy = ::dup(fd);
      if (copy < 0) return false;
      socket_.assign(copy, ec);
      if (ec) {
        ::close(copy);
        return false;
      }
      watched_ = fd;
    }
    return true;
  }

  template <class Then>
  void wait(pg_asio::posix::descriptor_base::wait_type w, Then then) {
    socket_.async_wait(w, [self = shared_from_this(), gen = gen_,
                           then = std::move(then)](const boost::system::error_code& ec) {
      if (ec || gen != self->gen_) return;  // cancelled: the state moved on
      then();
    });
  }

  void connect_step(PostgresPollingStatusType st) {
    if (st == PGRES_POLLING_OK) {
      state_ = State::idle;
      timer_.cancel();
      complete("");
      return listen();
    }
    if (st == PGRES_POLLING_FAILED || !watch()) return lose(message("connect"));
    wait(st == PGRES_POLLING_READING ? pg_asio::posix::descriptor_base::wait_read
                                     : pg_asio::posix::descriptor_base::wait_write,
         [this] { connect_step(PQconnectPoll(conn_)); });
  }

  void flush() {
    int rc = PQflush(conn_);
    if (rc < 0) return lose(message("write"));
    if (rc == 1) return wait(pg_asio::posix::descriptor_base::wait_write, [this] { flush(); });
    read();
  }

  // Takes what arrived; completes the query once libpq has every result.
  void read() {
    if (PQconsumeInput(conn_) != 1 || PQstatus(conn_) == CONNECTION_BAD)
      return lose(message("read"));
    deliver();
    while (state_ == State::busy && PQisBusy(conn_) == 0) {
      PGresult* r = PQgetResult(conn_);
      if (!r) {
        state_ = State::idle;
        timer_.cancel();
        complete(error_);
        return listen();
      }
      ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_TUPLES_OK) {
        rows_.clear();
        for (int i = 0; i < PQntuples(r); ++i) {
          std::vector<std::string> row;
          for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j));
          rows_.push_back(std::move(row));
        }
      } else if (st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY && error_.empty()) {
        std::string m = PQresultErrorMessage(r);
        while (!m.empty() && m.back() == '\n') m.pop_back();
        error_ = "postgres: " + m;
      }
      PQclear(r);
    }
    if (state_ == State::busy) wait(pg_asio::posix::descriptor_base::wait_read, [this] { read(); });
  }

  // Idle: a read wait, so notifications (and a lost connection) are seen at once.
  void listen() {
    if (state_ != State::idle) return;
    wait(pg_asio::posix::descriptor_base::wait_read, [this] {
      if (state_ != State::idle) return;
      if (PQconsumeInput(conn_) != 1 || PQstatus(conn_) == CONNECTION_BAD)
        return lose(message("read"));
      deliver();
      listen();
    });
  }

  void deliver() {
    while (PGnotify* n = PQnotifies(conn_)) {
      std::string channel = n->relname, payload = n->extra ? n->extra : "";
      PQfreemem(n);
      if (notify_) notify_(channel, payload);
    }
  }

  void arm_timer() {
    ++gen_;
    boost::system::error_code ec;
    socket_.cancel(ec);  // the idle wait: this call reads from now on
    timer_.expires_after(timeout_);
    timer_.async_wait([self = shared_from_this(), gen = gen_](const boost::system::error_code& ec) {
      if (ec || gen != self->gen_) return;
      self->lose("postgres: no answer within " + std::to_string(self->timeout_.count()) + " ms");
    });
  }

  void complete(std::string error) {
    if (auto d = std::move(rows_done_)) {
      rows_done_ = nullptr;
      d(std::move(error), std::move(rows_));
    }
  }

  // The connection is gone: the call in flight fails; an idle one tells on_lost.
  void lose(const std::string& why) {
    bool was_open = state_ == State::idle;
    drop();
    if (rows_done_) return complete(why);
    if (was_open && lost_) lost_(why);
  }

  void drop() {
    ++gen_;
    state_ = State::closed;
    boost::system::error_code ec;
    timer_.cancel();
    socket_.close(ec);
    watched_ = -1;
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
  }

  std::string conninfo_;
  std::chrono::milliseconds timeout_;
  pg_asio::posix::stream_descriptor socket_;
  pg_asio::steady_timer timer_;
  PGconn* conn_ = nullptr;
  int watched_ = -1;
  State state_ = State::closed;
  std::uint64_t gen_ = 0;  // bumped by each new wait's owner: older handlers do nothing
  RowsDone rows_done_;
  PgRows rows_;
  std::string error_;
  std::function<void(const std::string&, const std::string&)> notify_;
  std::function<void(const std::string&)> lost_;
};

}  // namespace cacheaside::detail
