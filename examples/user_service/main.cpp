// The example user service: GET/POST/PUT/DELETE /users over SQLite, cached in memcached
// through cacheaside (users_all for 60 s, user_<id> for 120 s). Layers: routes.cpp (HTTP)
// -> Users (cached_users.cpp, or the database alone) -> repository.cpp (SQLite).
//
//   user_service --port 8000 --db data/users.db --memcached "--SERVER=127.0.0.1:11211" --seed 100
#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cacheaside/libmemcached.hpp>
#include <cacheaside/meta.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "cached_users.hpp"
#include "repository.hpp"
#include "routes.hpp"
#include "users.hpp"

namespace {

struct Flags {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string db = "data/users.db";
  std::string memcached = "--SERVER=127.0.0.1:11211";
  int seed = 0;
  int threads = 8;
  bool no_cache = false;
  bool quiet = false;
  std::optional<std::string> spool_dir;  // unset: the directory of --db
  int near_ms = 100;                     // near cache sync bound; 0: no near cache
  std::string protocol = "meta";         // meta (MetaStore) or classic (MemcachedStore)
  long long max_body = 1 << 20;          // larger request bodies get 413
};

[[noreturn]] void usage(const char* argv0, const std::string& problem) {
  if (!problem.empty()) std::cerr << argv0 << ": " << problem << "\n";
  std::cerr << "usage: " << argv0
            << " [--host H] [--port N] [--db PATH] [--memcached CONFIG] [--seed N]\n"
               "       [--threads N] [--no-cache] [--quiet] [--spool-dir DIR]\n"
               "       [--near-ms N] [--protocol meta|classic] [--max-body BYTES]\n";
  std::exit(2);
}

Flags parse_flags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0], a + " needs a value");
      return argv[++i];
    };
    auto number = [&]() {
      std::string v = value();
      try {
        return std::stoi(v);
      } catch (const std::exception&) {
        usage(argv[0], a + " takes a number, not '" + v + "'");
      }
    };
    if (a == "--host")
      f.host = value();
    else if (a == "--port")
      f.port = number();
    else if (a == "--db")
      f.db = value();
    else if (a == "--memcached")
      f.memcached = value();
    else if (a == "--seed")
      f.seed = number();
    else if (a == "--threads")
      f.threads = number();
    else if (a == "--near-ms")
      f.near_ms = number();
    else if (a == "--max-body")
      f.max_body = number();
    else if (a == "--protocol")
      f.protocol = value();
    else if (a == "--spool-dir")
      f.spool_dir = value();
    else if (a == "--no-cache")
      f.no_cache = true;
    else if (a == "--quiet")
      f.quiet = true;
    else if (a == "-h" || a == "--help")
      usage(argv[0], "");
    else
      usage(argv[0], "unknown flag " + a);
  }
  if (f.threads < 1) usage(argv[0], "--threads must be at least 1");
  if (f.near_ms < 0) usage(argv[0], "--near-ms must not be negative");
  if (f.max_body < 64) usage(argv[0], "--max-body must be at least 64 bytes");
  if (f.protocol != "meta" && f.protocol != "classic")
    usage(argv[0], "--protocol is meta or classic, not '" + f.protocol + "'");
  return f;
}

// The store: the --memcached configuration, with a pool connection for every server
// thread (plus a few for background refreshes) unless it says otherwise. The meta
// protocol by default; classic where something in between passes only the classic
// commands (twemproxy).
std::shared_ptr<cacheaside::Store> make_store(const Flags& flags) {
  cacheaside::ServerOptions so;
  so.pool_max = static_cast<std::size_t>(flags.threads) + 4;
  if (flags.memcached.find("--") == std::string::npos)
    so.servers.push_back(flags.memcached);  // plain "host:port"
  else
    so.extra = flags.memcached;  // given after ours: its options win
  if (flags.protocol == "meta") {
    // Every connection the server threads can use, opened now: the pool does not grow
    // under load later.
    so.extra = "--POOL-MIN=" + std::to_string(so.pool_max) + " " + so.extra;
    return std::make_shared<cacheaside::MetaStore>(so);
  }
  return std::make_shared<cacheaside::MemcachedStore>(so);
}

// Pending invalidations survive a crash in <spool dir>/cacheaside-<port>-<cache>.spool
// (one per instance: two instances may share a database directory). An empty
// --spool-dir keeps them in memory only.
std::string spool_prefix(const Flags& flags) {
  std::string dir;
  if (flags.spool_dir) {
    dir = *flags.spool_dir;
    if (dir.empty()) return "";
  } else {
    auto slash = flags.db.rfind('/');
    dir = slash == std::string::npos ? "." : flags.db.substr(0, slash);
  }
  return dir + "/cacheaside-" + std::to_string(flags.port) + "-";
}

httplib::Server* g_server = nullptr;

extern "C" void on_signal(int) {
  if (g_server) g_server->stop();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = parse_flags(argc, argv);
  try {
    user_service::UserRepository repo(flags.db, flags.threads + 2);
    if (flags.seed > 0) {
      int n = repo.seed(flags.seed);
      if (n) std::printf("seeded %d users into %s\n", n, flags.db.c_str());
    }
    // Chosen once: the routes never ask which.
    std::unique_ptr<user_service::Users> users;
    if (flags.no_cache)
      users = std::make_unique<user_service::DatabaseUsers>(repo);
    else
      users = std::make_unique<user_service::CachedUsers>(
          make_store(flags), repo, spool_prefix(flags), std::chrono::milliseconds(flags.near_ms));

    httplib::Server svr;
    int threads = flags.threads;
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    // Debian's cpp-httplib leaves Nagle on: without this every keep-alive reply waits ~40 ms.
    svr.set_tcp_nodelay(true);
    svr.set_keep_alive_max_count(100000);
    // Debian's cpp-httplib listens with a backlog of 5, which a burst of new connections
    // overflows (the kernel counts them as listen overflows). The listening socket is the
    // one these options are applied to; listen() again widens its backlog after bind.
    int listen_fd = -1;
    svr.set_socket_options([&listen_fd](socket_t sock) {
      httplib::default_socket_options(sock);
      listen_fd = sock;
    });
    user_service::add_routes(svr, *users, static_cast<std::size_t>(flags.max_body));
    if (!flags.quiet) user_service::add_request_log(svr);
    g_server = &svr;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    if (!svr.bind_to_port(flags.host.c_str(), flags.port)) {
      std::fprintf(stderr, "cannot listen on %s:%d\n", flags.host.c_str(), flags.port);
      return 1;
    }
    if (listen_fd >= 0) ::listen(listen_fd, SOMAXCONN);
    std::string cache = flags.no_cache ? "no cache" : flags.memcached + ", " + flags.protocol;
    std::printf("listening on http://%s:%d (%s, %d threads)\n", flags.host.c_str(), flags.port,
                cache.c_str(), flags.threads);
    std::fflush(stdout);
    svr.listen_after_bind();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "user_service: %s\n", e.what());
    return 1;
  }
  return 0;
}
