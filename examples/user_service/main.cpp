// The example user service: GET/POST/PUT/DELETE /users over SQLite, cached in memcached
// through cacheaside (users_all for 60 s, user_<id> for 120 s). Layers: routes.cpp (HTTP
// on Boost.Beast) -> AsyncUsers (async_cached_users.cpp; or a blocking Users on the pool:
// the database alone, or cached_users.cpp over the classic protocol) -> repository.cpp
// (SQLite, on the pool).
//
//   user_service --port 8000 --db data/users.db --memcached "--SERVER=127.0.0.1:11211" --seed 100
#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/libmemcached.hpp>
#include <cacheaside/meta.hpp>
#ifdef USER_SERVICE_WITH_TLS
#include <cacheaside/tls.hpp>  // lets --memcached-tls-* work
#endif
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "async_cached_users.hpp"
#include "cached_users.hpp"
#include "http_server.hpp"
#include "io_threads.hpp"
#include "outbox_relay.hpp"
#include "private_file.hpp"
#include "repository.hpp"
#include "signing_keys.hpp"
#include "users.hpp"

namespace {

namespace asio = boost::asio;

struct Flags {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string db = "data/users.db";
  std::string memcached = "--SERVER=127.0.0.1:11211";
  int seed = 0;
  int threads = 0;     // io threads, one io_context each; 0: one per core
  int db_threads = 4;  // the pool SQLite (and the classic cache) runs on
  bool no_cache = false;
  bool quiet = false;
  std::optional<std::string> spool_dir;  // unset: the directory of --db
  int near_ms = 100;                     // near cache sync bound; 0: no near cache
  std::string protocol = "meta";         // meta (AsyncMetaStore) or classic (MemcachedStore)
  long long max_body = 1 << 20;          // larger request bodies get 413
  int relay_ms = 50;                     // outbox relay interval; 0: no relay
  bool crash_after_commit = false;       // test-only fault point
  std::string signing_keys;              // a file of signing keys (see signing_keys.hpp)
  std::string memcached_auth_file;       // "user:password" (memcached -Y's format)
  cacheaside::TlsOptions memcached_tls;  // TLS to memcached (AsyncMetaStore)
};

[[noreturn]] void usage(const char* argv0, const std::string& problem) {
  if (!problem.empty()) std::cerr << argv0 << ": " << problem << "\n";
  std::cerr
      << "usage: " << argv0
      << " [--host H] [--port N] [--db PATH] [--memcached CONFIG] [--seed N]\n"
         "       [--threads N] [--db-threads N] [--no-cache] [--quiet] [--spool-dir DIR]\n"
         "       [--near-ms N] [--protocol meta|classic] [--max-body BYTES] [--relay-ms N]\n"
         "       [--signing-keys FILE (lines '<id> <secret>'; or USER_SERVICE_SIGNING_KEYS)]\n"
         "       [--memcached-auth-file FILE ('user:password'; or USER_SERVICE_MEMCACHED_AUTH)]\n"
         "       [--memcached-tls-ca FILE] [--memcached-tls-cert FILE --memcached-tls-key FILE]\n"
         "       [--memcached-tls-name NAME]\n"
         "       [--crash-after-commit (tests only: dies after each write's commit)]\n";
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
    else if (a == "--db-threads")
      f.db_threads = number();
    else if (a == "--near-ms")
      f.near_ms = number();
    else if (a == "--max-body")
      f.max_body = number();
    else if (a == "--relay-ms")
      f.relay_ms = number();
    else if (a == "--crash-after-commit")
      f.crash_after_commit = true;
    else if (a == "--protocol")
      f.protocol = value();
    else if (a == "--spool-dir")
      f.spool_dir = value();
    else if (a == "--signing-keys")
      f.signing_keys = value();
    else if (a == "--memcached-auth-file")
      f.memcached_auth_file = value();
    else if (a == "--memcached-tls-ca")
      f.memcached_tls.ca_file = value();
    else if (a == "--memcached-tls-cert")
      f.memcached_tls.cert_file = value();
    else if (a == "--memcached-tls-key")
      f.memcached_tls.key_file = value();
    else if (a == "--memcached-tls-name")
      f.memcached_tls.server_name = value();
    else if (a == "--no-cache")
      f.no_cache = true;
    else if (a == "--quiet")
      f.quiet = true;
    else if (a == "-h" || a == "--help")
      usage(argv[0], "");
    else
      usage(argv[0], "unknown flag " + a);
  }
  if (f.threads < 0) usage(argv[0], "--threads must not be negative");
  if (f.threads == 0)
    f.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (f.db_threads < 1) usage(argv[0], "--db-threads must be at least 1");
  if (f.near_ms < 0) usage(argv[0], "--near-ms must not be negative");
  if (f.relay_ms < 0) usage(argv[0], "--relay-ms must not be negative");
  if (f.max_body < 64) usage(argv[0], "--max-body must be at least 64 bytes");
  if (f.protocol != "meta" && f.protocol != "classic")
    usage(argv[0], "--protocol is meta or classic, not '" + f.protocol + "'");
  if (f.protocol == "classic" && (f.memcached_tls.on() || !f.memcached_auth_file.empty() ||
                                  std::getenv("USER_SERVICE_MEMCACHED_AUTH")))
    usage(argv[0], "TLS and memcached credentials need --protocol meta (libmemcached has neither)");
  return f;
}

// The --memcached configuration: a plain "host:port", or a libmemcached string (its
// options win over ours).
// TLS and credentials come from files (the key and the credentials only their owner
// may read) or the environment, never from a flag's value, which `ps` shows.
cacheaside::ServerOptions server_options(const Flags& flags, std::size_t pool) {
  cacheaside::ServerOptions so;
  so.pool_max = pool;
  if (flags.memcached.find("--") == std::string::npos)
    so.servers.push_back(flags.memcached);
  else
    so.extra = flags.memcached;
  so.tls = flags.memcached_tls;
  if (!so.tls.key_file.empty())
    user_service::check_private_file("--memcached-tls-key", so.tls.key_file);
  if (!flags.memcached_auth_file.empty()) {
    user_service::check_private_file("--memcached-auth-file", flags.memcached_auth_file);
    so.auth_file = flags.memcached_auth_file;
  } else if (const char* env = std::getenv("USER_SERVICE_MEMCACHED_AUTH")) {
    std::string creds = env;  // "user:password"
    auto colon = creds.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == creds.size())
      throw std::runtime_error("USER_SERVICE_MEMCACHED_AUTH: expected 'user:password'");
    so.username = creds.substr(0, colon);
    so.password = creds.substr(colon + 1);
  }
  return so;
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

}  // namespace

int main(int argc, char** argv) {
  Flags flags = parse_flags(argc, argv);
  try {
    user_service::UserRepository repo(flags.db, flags.db_threads + 2);
    repo.crash_after_commit(flags.crash_after_commit);
    if (flags.seed > 0) {  // the outbox's triggers record the rows: the relay invalidates
      int n = repo.seed(flags.seed);
      if (n) std::printf("seeded %d users into %s\n", n, flags.db.c_str());
    }
    user_service::IoThreads io(flags.threads);
    asio::thread_pool pool(static_cast<std::size_t>(flags.db_threads));
    user_service::CacheSettings settings;
    settings.spool_prefix = spool_prefix(flags);
    settings.near_sync = std::chrono::milliseconds(flags.near_ms);
    settings.signing_keys = user_service::load_signing_keys(flags.signing_keys);

    // Chosen once: the routes never ask which. The async caches run on the first
    // io_context (the requests of the others hop to it and back).
    std::unique_ptr<user_service::Users> blocking;
    std::unique_ptr<user_service::AsyncUsers> users;
    if (flags.no_cache) {
      blocking = std::make_unique<user_service::DatabaseUsers>(repo);
    } else if (flags.protocol == "classic") {
      // Through something that passes only the classic commands (twemproxy): the
      // blocking cache, on the pool (a connection for each of its threads, and some for
      // background refreshes).
      auto store = std::make_shared<cacheaside::MemcachedStore>(
          server_options(flags, static_cast<std::size_t>(flags.db_threads) + 4));
      blocking = std::make_unique<user_service::CachedUsers>(store, repo, settings);
    } else {
      auto store = std::make_shared<cacheaside::AsyncMetaStore>(io.front().get_executor(),
                                                                server_options(flags, 1));
      users = std::make_unique<user_service::AsyncCachedUsers>(store, repo, pool.get_executor(),
                                                               settings);
    }
    if (blocking)
      users = std::make_unique<user_service::PooledUsers>(*blocking, pool.get_executor());

    user_service::HttpOptions http;
    http.max_body = static_cast<std::size_t>(flags.max_body);
    http.log = !flags.quiet;
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address(flags.host),
                                     static_cast<unsigned short>(flags.port));
    user_service::HttpServer server(io.contexts(), endpoint, *users, http);
    // Every committed write, whoever made it, invalidated within about relay_ms. What
    // the outbox holds at start (a crashed writer's, the seed's) is relayed before the
    // first request is accepted.
    std::optional<user_service::OutboxRelay> relay;
    if (!flags.no_cache && flags.relay_ms > 0) {
      relay.emplace(repo, *users, pool.get_executor(), std::chrono::milliseconds(flags.relay_ms),
                    flags.quiet);
      relay->start(io.front().get_executor(), [&server] { server.start(); });
    } else {
      server.start();
    }

    asio::signal_set signals(io.front(), SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      server.stop();
      io.stop();
    });
    std::signal(SIGPIPE, SIG_IGN);
    std::string cache = flags.no_cache ? "no cache" : flags.memcached + ", " + flags.protocol;
    if (!flags.no_cache && flags.memcached_tls.on()) cache += ", TLS";
    if (!flags.no_cache && !settings.signing_keys.empty())
      cache += ", values signed with key " + settings.signing_keys.front().id;
    std::printf("listening on http://%s:%d (%s, %d io threads, %d database threads)\n",
                flags.host.c_str(), flags.port, cache.c_str(), flags.threads, flags.db_threads);
    std::fflush(stdout);

    io.run();  // until the signal
    pool.join();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "user_service: %s\n", e.what());
    return 1;
  }
  return 0;
}
