// A private PostgreSQL cluster for one test process: Debian's initdb and pg_ctl
// (/usr/lib/postgresql/<version>/bin) on a free loopback port with its own socket
// directory, stopped and removed at the end. Both refuse to run as root: as root
// they run as the postgres user. A blocking libpq session (`exec`) for the tests'
// own SQL.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/memcached_process.hpp"

namespace cacheaside_test {

/// The bin directory of the newest PostgreSQL Debian installed.
inline std::string postgres_bin() {
  std::string best;
  int best_version = 0;
  if (DIR* d = ::opendir("/usr/lib/postgresql")) {
    while (dirent* e = ::readdir(d)) {
      int v = std::atoi(e->d_name);
      std::string bin = std::string("/usr/lib/postgresql/") + e->d_name + "/bin";
      if (v > best_version && ::access((bin + "/pg_ctl").c_str(), X_OK) == 0) {
        best_version = v;
        best = bin;
      }
    }
    ::closedir(d);
  }
  if (best.empty()) throw std::runtime_error("postgres: no /usr/lib/postgresql/*/bin/pg_ctl");
  return best;
}

class PostgresProcess {
 public:
  PostgresProcess() : bin_(postgres_bin()) {
    char tmpl[] = "/tmp/cacheaside_pg_XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("postgres: mkdtemp");
    dir_ = tmpl;
    if (::geteuid() == 0) {
      run("chown postgres " + dir_);  // initdb and pg_ctl refuse root
      ::chmod(dir_.c_str(), 0700);
    }
    watch_over();
    run_as(bin_ + "/initdb -D " + dir_ +
           "/data -U postgres -A trust -E UTF8 --locale=C "
           "--no-sync --no-instructions > " +
           dir_ + "/initdb.log 2>&1");
    start();
  }
  PostgresProcess(const PostgresProcess&) = delete;
  PostgresProcess& operator=(const PostgresProcess&) = delete;
  ~PostgresProcess() {
    stop("immediate");
    std::system(("rm -rf " + dir_).c_str());
    ::close(guard_);  // the watcher finds nothing left to do
    ::waitpid(watcher_, nullptr, 0);
  }

  int port() const { return port_; }
  /// A libpq connection string for the cluster's superuser database.
  std::string conninfo(const std::string& extra = "") const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres" +
           (extra.empty() ? "" : " " + extra);
  }

  /// Starts it (on a new free port if the old one was taken meanwhile).
  void start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = port_ ? port_ : free_port();
      int rc = run_as(bin_ + "/pg_ctl -D " + dir_ + "/data -w -t 30 -l " + dir_ +
                          "/server.log -o \"-p " + std::to_string(port_) + " -k " + dir_ +
                          " -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                          "-c full_page_writes=off\" start > /dev/null 2>&1",
                      false);
      if (rc == 0) return;
      port_ = 0;
    }
    throw std::runtime_error("postgres: pg_ctl start failed (see " + dir_ + "/server.log)");
  }
  /// Stops it: "immediate" is a crash (no shutdown checkpoint), "fast" a clean stop.
  void stop(const std::string& mode = "fast") {
    if (session_) PQfinish(session_);
    session_ = nullptr;
    run_as(bin_ + "/pg_ctl -D " + dir_ + "/data -m " + mode + " -w stop > /dev/null 2>&1", false);
  }

  /// Runs sql on the test's own session (reconnected when needed); the rows of its
  /// last result. Throws with the server's message.
  std::vector<std::vector<std::string>> exec(const std::string& sql) {
    if (!session_ || PQstatus(session_) != CONNECTION_OK) {
      if (session_) PQfinish(session_);
      session_ = PQconnectdb(conninfo().c_str());
      if (PQstatus(session_) != CONNECTION_OK)
        throw std::runtime_error(std::string("postgres: ") + PQerrorMessage(session_));
      PQsetNoticeProcessor(
          session_, [](void*, const char*) {}, nullptr);  // "... skipping"
    }
    PGresult* r = PQexec(session_, sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      std::string why = PQresultErrorMessage(r);
      PQclear(r);
      throw std::runtime_error("postgres: " + why);
    }
    std::vector<std::vector<std::string>> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
      rows.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) rows.back().emplace_back(PQgetvalue(r, i, j));
    }
    PQclear(r);
    return rows;
  }
  /// The single value of a one-row, one-column query.
  std::string value(const std::string& sql) {
    auto rows = exec(sql);
    if (rows.size() != 1 || rows[0].size() != 1)
      throw std::runtime_error("postgres: not one value: " + sql);
    return rows[0][0];
  }

 private:
  // A child that outlives a crash of this process: when the pipe's write end closes
  // (this process exited, however), it stops the cluster and removes its directory.
  void watch_over() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("postgres: pipe");
    // Again while a server that was starting may still write there.
    std::string cleanup = "for i in 1 2 3 4 5; do " +
                          wrap(bin_ + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop") +
                          " > /dev/null 2>&1; rm -rf " + dir_ + "; [ -d " + dir_ +
                          " ] || break; sleep 1; done";
    watcher_ = ::fork();
    if (watcher_ < 0) throw std::runtime_error("postgres: fork");
    if (watcher_ == 0) {  // async-signal-safe calls only: the parent may have threads
      ::close(fds[1]);
      char c;
      while (::read(fds[0], &c, 1) != 0) {
      }
      ::execl("/bin/sh", "sh", "-c", cleanup.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[0]);
    guard_ = fds[1];
  }

  std::string wrap(const std::string& cmd) const {
    return ::geteuid() == 0 ? "runuser -u postgres -- sh -c '" + cmd + "'" : cmd;
  }
  int run_as(const std::string& cmd, bool check = true) { return run(wrap(cmd), check); }
  static int run(const std::string& cmd, bool check = true) {
    int rc = std::system(cmd.c_str());
    if (check && rc != 0) throw std::runtime_error("postgres: failed: " + cmd);
    return rc;
  }

  std::string bin_, dir_;
  int port_ = 0;
  pid_t watcher_ = -1;
  int guard_ = -1;
  PGconn* session_ = nullptr;
};

}  // namespace cacheaside_test
