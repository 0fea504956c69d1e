// The example service as a test starts it: its own memcached (or a shared one),
// a database in a fresh directory (or a shared one), on free ports; and helpers to
// call it and to read what memcached and SQLite hold.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cacheaside/envelope.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/memcached_process.hpp"
#include "support/raw_client.hpp"

namespace cacheaside_test {

using nlohmann::json;

inline long long ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

// How to start a service: its own memcached and database, or shared ones.
struct Setup {
  int seed = 20;
  bool quiet = true;
  std::string memcached;                // empty: its own memcached
  std::string dir;                      // empty: a fresh directory (and database), removed after
  std::vector<std::string> extra = {};  // more flags
  std::vector<std::string> memcached_args = {};  // for its own memcached (TLS, -Y)
};

// memcached + user_service on free ports, with a fresh database.
class Service {
 public:
  explicit Service(int seed = 20, bool quiet = true) : Service(Setup{seed, quiet, "", ""}) {}
  explicit Service(const Setup& setup) {
    if (setup.memcached.empty())
      own_memcached_ = std::make_unique<MemcachedProcess>(setup.memcached_args);
    if (setup.dir.empty()) {
      char dir[] = "/tmp/cacheaside_e2eXXXXXX";
      REQUIRE(::mkdtemp(dir));
      dir_ = dir;
      owns_dir_ = true;
    } else {
      dir_ = setup.dir;
    }
    db_ = dir_ + "/users.db";
    port_ = free_port();
    log_ = dir_ + "/service-" + std::to_string(port_) + ".log";
    std::vector<std::string> args = {USER_SERVICE_BIN,
                                     "--port",
                                     std::to_string(port_),
                                     "--db",
                                     db_,
                                     "--memcached",
                                     own_memcached_ ? own_memcached_->config() : setup.memcached,
                                     "--seed",
                                     std::to_string(setup.seed),
                                     "--threads",
                                     "2"};
    if (setup.quiet) args.push_back("--quiet");
    // ctest runs these once per protocol (the service's default is meta).
    if (const char* p = std::getenv("CACHEASIDE_TEST_STORE")) {
      args.push_back("--protocol");
      args.push_back(std::string(p) == "classic" ? "classic" : "meta");
    }
    args.insert(args.end(), setup.extra.begin(), setup.extra.end());
    // More flags for every service of a run, e.g. "--relay-ms 0" to see what fails
    // without the outbox relay.
    if (const char* more = std::getenv("CACHEASIDE_E2E_SERVICE_FLAGS")) {
      std::istringstream words(more);
      for (std::string w; words >> w;) args.push_back(w);
    }
    // Before fork(): the child of a threaded process must not allocate.
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
      int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !port_open(port_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    REQUIRE(port_open(port_));
  }
  ~Service() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    std::remove(log_.c_str());
    if (!owns_dir_) return;
    for (const char* f : {"", "-wal", "-shm"}) std::remove((db_ + f).c_str());
    ::rmdir(dir_.c_str());
  }

  /// Waits up to 10 s for the service to exit by itself: its wait status, or -1.
  int wait_exit() {
    int status = 0;
    for (int i = 0; i < 1000; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  HttpClient client() const { return HttpClient("127.0.0.1", port_, 10); }
  MemcachedProcess& memcached() {
    REQUIRE(own_memcached_);
    return *own_memcached_;
  }
  const std::string& db() const { return db_; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  /// A counter from /metrics, e.g. ("hits", "user").
  long metric(const std::string& name, const std::string& cache) {
    auto res = client().Get("/metrics");
    REQUIRE(res);
    std::string needle = "cacheaside_" + name + "_total{cache=\"" + cache + "\"} ";
    auto pos = res->body.find(needle);
    REQUIRE(pos != std::string::npos);
    return std::stol(res->body.substr(pos + needle.size()));
  }

 private:
  std::unique_ptr<MemcachedProcess> own_memcached_;
  std::string dir_, db_, log_;
  bool owns_dir_ = false;
  int port_ = 0;
  pid_t pid_ = -1;
};

struct Answer {
  int status;
  std::string body;
};

inline Answer call(HttpClient& c, const std::string& method, const std::string& path,
                   const std::string& body = "") {
  HttpResult r = method == "GET"    ? c.Get(path.c_str())
                 : method == "PUT"  ? c.Put(path.c_str(), body, "application/json")
                 : method == "POST" ? c.Post(path.c_str(), body, "application/json")
                                    : c.Delete(path.c_str());
  REQUIRE(r);
  return {r->status, r->body};
}

// The rows of the database, by id, as the API writes them.
inline std::map<long long, json> db_rows(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT id, name, email FROM users ORDER BY id", -1, &st,
                             nullptr) == SQLITE_OK);
  std::map<long long, json> rows;
  while (sqlite3_step(st) == SQLITE_ROW) {
    long long id = sqlite3_column_int64(st, 0);
    rows[id] = json{{"id", id},
                    {"name", reinterpret_cast<const char*>(sqlite3_column_text(st, 1))},
                    {"email", reinterpret_cast<const char*>(sqlite3_column_text(st, 2))}};
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

// What memcached holds under key: nullopt (absent), null JSON (negative entry) or the value.
inline std::optional<json> cached(RawClient& raw, const std::string& key) {
  auto item = raw.get(key);
  if (!item) return std::nullopt;
  auto e = cacheaside::envelope::decode(item->value, item->flags);
  if (e.kind == cacheaside::envelope::Kind::negative) return json(nullptr);
  REQUIRE(e.kind == cacheaside::envelope::Kind::value);
  return json::parse(e.payload);
}

}  // namespace cacheaside_test
