// The example user service: GET/POST/PUT/DELETE /users over SQLite, cached in memcached
// through cacheaside (users_all for 60 s, user_<id> for 120 s), invalidated by the data
// layer's change hooks.
//
//   user_service --port 8000 --db data/users.db --memcached "--SERVER=127.0.0.1:11211" --seed 100
#include <httplib.h>

#include <atomic>
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

#include "fastapi_errors.hpp"
#include "repository.hpp"
#include "user_caches.hpp"

namespace {

using user_service::User;

struct Flags {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string db = "data/users.db";
  std::string memcached = "--SERVER=127.0.0.1:11211";
  int seed = 0;
  int threads = 8;
  bool no_cache = false;
  bool quiet = false;
};

[[noreturn]] void usage(const char* argv0, const std::string& problem) {
  if (!problem.empty()) std::cerr << argv0 << ": " << problem << "\n";
  std::cerr << "usage: " << argv0
            << " [--host H] [--port N] [--db PATH] [--memcached CONFIG] [--seed N]\n"
               "       [--threads N] [--no-cache] [--quiet]\n";
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
  return f;
}

// The pool must have a connection for every server thread (plus a few for background
// refreshes), or requests queue for one.
std::string with_pool(std::string config, int threads) {
  if (config.find("--") == std::string::npos) config = "--SERVER=" + config;
  std::string upper = config;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.find("--POOL-MAX") == std::string::npos)
    config += " --POOL-MAX=" + std::to_string(threads + 4);
  return config;
}

constexpr const char* kJson = "application/json";
const std::string kNotFound = R"({"detail":"Not Found"})";

class Service {
 public:
  Service(const Flags& flags) : flags_(flags), repo_(flags.db, flags.threads + 2) {
    if (!flags.no_cache) {
      store_ =
          std::make_shared<cacheaside::MemcachedStore>(with_pool(flags.memcached, flags.threads));
      caches_ = std::make_unique<user_service::UserCaches>(store_, repo_);
    }
  }

  user_service::UserRepository& repo() { return repo_; }

  void routes(httplib::Server& svr) {
    svr.Get("/users/", [this](const httplib::Request&, httplib::Response& res) {
      auto users = caches_ ? caches_->users() : repo_.all();
      res.set_content(user_service::to_json(users), kJson);
    });
    svr.Get("/users", [](const httplib::Request&, httplib::Response& res) {
      res.status = 307;  // as FastAPI does for the missing slash
      res.set_header("Location", "/users/");
    });
    svr.Post("/users/", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = user_service::parse_user_body(req.body);
      if (!body.error.empty()) return reply(res, 422, body.error);
      User u = repo_.create(body.name, body.email);
      reply(res, 201, user_service::to_json(u));
    });
    svr.Get(R"(/users/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      long long id = 0;
      if (!path_id(req, res, id)) return;
      auto u = caches_ ? caches_->user(id) : repo_.find(id);
      if (!u) return reply(res, 404, kNotFound);
      res.set_content(user_service::to_json(*u), kJson);
    });
    svr.Put(R"(/users/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      long long id = 0;
      if (!path_id(req, res, id)) return;
      auto body = user_service::parse_user_body(req.body);
      if (!body.error.empty()) return reply(res, 422, body.error);
      auto u = repo_.update(id, body.name, body.email);
      if (!u) return reply(res, 404, kNotFound);
      res.set_content(user_service::to_json(*u), kJson);
    });
    svr.Delete(R"(/users/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      long long id = 0;
      if (!path_id(req, res, id)) return;
      if (!repo_.remove(id)) return reply(res, 404, kNotFound);
      res.status = 204;
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics(), "text/plain; version=0.0.4");
    });
    svr.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      bool db = repo_.healthy();
      std::string cache = "disabled";
      if (store_) {
        cacheaside::StoreItem item;
        auto st = store_->get("healthz", item);
        cache = cacheaside::is_failure(st) ? "down" : "ok";
      }
      reply(res, db ? 200 : 503,
            std::string(R"({"status":")") + (db ? "ok" : "fail") + R"(","database":")" +
                (db ? "ok" : "down") + R"(","memcached":")" + cache + "\"}");
    });
    svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (res.status == 404) reply(res, 404, kNotFound);
      if (res.status == 405) reply(res, 405, R"({"detail":"Method Not Allowed"})");
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          std::fprintf(stderr, "error: %s\n", what.c_str());
          reply(res, 500, R"({"detail":"Internal Server Error"})");
        });
    if (!flags_.quiet) {
      svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
        trace().clear();
        start() = std::chrono::steady_clock::now();
        return httplib::Server::HandlerResponse::Unhandled;
      });
      svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start())
                      .count();
        auto& t = trace().text;
        char line[512];
        std::snprintf(line, sizeof line, "%s %s %d %s %.2f ms\n", req.method.c_str(),
                      req.path.c_str(), res.status, t.empty() ? "-" : t.c_str(), us / 1000.0);
        std::fputs(line, stdout);
        std::fflush(stdout);
      });
    }
  }

 private:
  static user_service::RequestTrace& trace() { return user_service::trace(); }
  static std::chrono::steady_clock::time_point& start() {
    thread_local std::chrono::steady_clock::time_point t;
    return t;
  }

  static void reply(httplib::Response& res, int status, const std::string& body) {
    res.status = status;
    res.set_content(body, kJson);
  }

  // Path ids as FastAPI reads them: 422 when not an integer.
  static bool path_id(const httplib::Request& req, httplib::Response& res, long long& id) {
    bool too_big = false;
    auto parsed = user_service::parse_path_id(req.matches[1], too_big);
    if (!parsed) {
      reply(res, 422, user_service::invalid_id_body());
      return false;
    }
    if (too_big) {  // a valid integer, but no row can have it
      reply(res, 404, kNotFound);
      return false;
    }
    id = *parsed;
    return true;
  }

  std::string metrics() {
    std::ostringstream out;
    if (!caches_) {
      out << "# cache disabled (--no-cache)\n";
      return out.str();
    }
    auto a = caches_->by_id().stats(), b = caches_->lists().stats();
    auto counter = [&](const char* name, const char* help, std::uint64_t x, std::uint64_t y) {
      out << "# HELP cacheaside_" << name << "_total " << help << "\n"
          << "# TYPE cacheaside_" << name << "_total counter\n"
          << "cacheaside_" << name << "_total{cache=\"user\"} " << x << "\n"
          << "cacheaside_" << name << "_total{cache=\"users\"} " << y << "\n";
    };
    counter("hits", "Lookups answered from memcached.", a.hits, b.hits);
    counter("misses", "Lookups that found nothing usable.", a.misses, b.misses);
    counter("loads", "Loader (database) calls.", a.loads, b.loads);
    counter("load_errors", "Loader calls that threw.", a.load_errors, b.load_errors);
    counter("cache_errors", "memcached failures absorbed.", a.cache_errors, b.cache_errors);
    counter("stale_served", "Expired copies served.", a.stale_served, b.stale_served);
    counter("coalesced", "Lookups that shared another's load.", a.coalesced, b.coalesced);
    counter("lease_waits", "Waits on another process's load.", a.lease_waits, b.lease_waits);
    counter("stale_sets_prevented", "Loaded values not stored after a write.",
            a.stale_sets_prevented, b.stale_sets_prevented);
    counter("decode_errors", "Unreadable cached values.", a.decode_errors, b.decode_errors);
    counter("invalidations", "Keys invalidated.", a.invalidations, b.invalidations);
    return out.str();
  }

  Flags flags_;
  user_service::UserRepository repo_;
  std::shared_ptr<cacheaside::MemcachedStore> store_;
  std::unique_ptr<user_service::UserCaches> caches_;
};

httplib::Server* g_server = nullptr;

extern "C" void on_signal(int) {
  if (g_server) g_server->stop();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = parse_flags(argc, argv);
  try {
    Service service(flags);
    if (flags.seed > 0) {
      int n = service.repo().seed(flags.seed);
      if (n) std::printf("seeded %d users into %s\n", n, flags.db.c_str());
    }
    httplib::Server svr;
    int threads = flags.threads;
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    // Debian's cpp-httplib leaves Nagle on: without this every keep-alive reply waits ~40 ms.
    svr.set_tcp_nodelay(true);
    svr.set_keep_alive_max_count(100000);
    service.routes(svr);
    g_server = &svr;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    if (!svr.bind_to_port(flags.host.c_str(), flags.port)) {
      std::fprintf(stderr, "cannot listen on %s:%d\n", flags.host.c_str(), flags.port);
      return 1;
    }
    std::printf("listening on http://%s:%d (%s, %d threads)\n", flags.host.c_str(), flags.port,
                flags.no_cache ? "no cache" : flags.memcached.c_str(), flags.threads);
    std::fflush(stdout);
    svr.listen_after_bind();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "user_service: %s\n", e.what());
    return 1;
  }
  return 0;
}
