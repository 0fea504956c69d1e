#include "routes.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "fastapi_errors.hpp"
#include "request_trace.hpp"

namespace user_service {
namespace {

constexpr const char* kJson = "application/json";
const std::string kNotFound = R"({"detail":"Not Found"})";

void reply(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, kJson);
}

// Path ids as FastAPI reads them: 422 when not an integer.
bool path_id(const httplib::Request& req, httplib::Response& res, long long& id) {
  bool too_big = false;
  auto parsed = parse_path_id(req.matches[1], too_big);
  if (!parsed) {
    reply(res, 422, invalid_id_body());
    return false;
  }
  if (too_big) {  // a valid integer, but no row can have it
    reply(res, 404, kNotFound);
    return false;
  }
  id = *parsed;
  return true;
}

// Prometheus text: one counter per Stats field and a gauge per Usage field, a line
// per cache (by Options::name).
std::string metrics(Users& users) {
  auto caches = users.cache_stats();
  if (caches.empty()) return "# cache disabled (--no-cache)\n";
  std::vector<std::vector<std::uint64_t>> values(caches.size());
  for (std::size_t i = 0; i < caches.size(); ++i)
    cacheaside::for_each_counter(caches[i].stats, [&](const char*, const char*, std::uint64_t v) {
      values[i].push_back(v);
    });
  std::ostringstream out;
  std::size_t k = 0;
  cacheaside::for_each_counter(caches.front().stats,
                               [&](const char* name, const char* help, std::uint64_t) {
                                 out << "# HELP cacheaside_" << name << "_total " << help << "\n"
                                     << "# TYPE cacheaside_" << name << "_total counter\n";
                                 for (std::size_t i = 0; i < caches.size(); ++i)
                                   out << "cacheaside_" << name << "_total{cache=\""
                                       << caches[i].name << "\"} " << values[i][k] << "\n";
                                 ++k;
                               });
  auto gauge = [&](const char* name, const char* help, auto field) {
    out << "# HELP cacheaside_" << name << " " << help << "\n"
        << "# TYPE cacheaside_" << name << " gauge\n";
    for (const auto& c : caches)
      out << "cacheaside_" << name << "{cache=\"" << c.name << "\"} " << c.usage.*field << "\n";
  };
  gauge("flights", "loads running now", &cacheaside::Usage::flights);
  gauge("throttled_keys", "keys the fail-safe throttle rests", &cacheaside::Usage::throttled);
  gauge("pending_invalidations", "invalidations waiting for memcached",
        &cacheaside::Usage::pending);
  gauge("near_entries", "values in the near cache", &cacheaside::Usage::near);
  return out.str();
}

std::chrono::steady_clock::time_point& request_start() {
  thread_local std::chrono::steady_clock::time_point t;
  return t;
}

std::atomic<bool> g_logging{false};  // add_request_log was called

// The methods each path answers, for 405's Allow ("" : an unknown path).
const char* allowed_methods(const std::string& path) {
  static const std::regex user(R"(/users/[^/]+)");
  if (path == "/users/") return "GET, POST";
  if (std::regex_match(path, user)) return "GET, PUT, DELETE";
  if (path == "/users" || path == "/metrics" || path == "/healthz") return "GET";
  return "";
}

bool says_length(const httplib::Request& req) {
  return req.has_header("Content-Length") ||
         req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
}

void delete_user(Users& users, const httplib::Request& req, httplib::Response& res) {
  long long id = 0;
  if (!path_id(req, res, id)) return;
  if (!users.remove(id)) return reply(res, 404, kNotFound);  // database, then invalidation
  res.status = 204;
}

}  // namespace

void add_routes(httplib::Server& svr, Users& users, std::size_t max_body) {
  svr.set_payload_max_length(max_body);
  // Runs before the server reads a body: a request that gives no length would make it
  // read until the client closes the connection.
  svr.set_pre_routing_handler([&users](const httplib::Request& req, httplib::Response& res) {
    if (g_logging) {
      RequestTrace::current().begin();
      request_start() = std::chrono::steady_clock::now();
    }
    if (says_length(req)) return httplib::Server::HandlerResponse::Unhandled;
    if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      reply(res, 411, R"({"detail":"Length Required"})");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method == "DELETE") {  // no body is expected: answer it here
      static const std::regex user(R"(/users/([^/]+))");
      httplib::Request r = req;
      if (std::regex_match(r.path, r.matches, user)) {
        delete_user(users, r, res);
      } else if (const char* allow = allowed_methods(r.path); *allow) {
        reply(res, 405, R"({"detail":"Method Not Allowed"})");
        res.set_header("Allow", allow);
      } else {
        reply(res, 404, kNotFound);
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.Get("/users/", [&users](const httplib::Request&, httplib::Response& res) {
    res.set_content(users.list_body(), kJson);
  });
  svr.Get("/users", [](const httplib::Request&, httplib::Response& res) {
    res.status = 307;  // as FastAPI does for the missing slash
    res.set_header("Location", "/users/");
  });
  svr.Post("/users/", [&users](const httplib::Request& req, httplib::Response& res) {
    auto body = parse_user_body(req.body);
    if (!body.error.empty()) return reply(res, 422, body.error);
    reply(res, 201, to_json(users.create(body.name, body.email)));
  });
  svr.Get(R"(/users/([^/]+))", [&users](const httplib::Request& req, httplib::Response& res) {
    long long id = 0;
    if (!path_id(req, res, id)) return;
    auto u = users.find(id);
    if (!u) return reply(res, 404, kNotFound);
    res.set_content(to_json(*u), kJson);
  });
  svr.Put(R"(/users/([^/]+))", [&users](const httplib::Request& req, httplib::Response& res) {
    long long id = 0;
    if (!path_id(req, res, id)) return;
    auto body = parse_user_body(req.body);
    if (!body.error.empty()) return reply(res, 422, body.error);
    auto u = users.update(id, body.name, body.email);  // database, then invalidation
    if (!u) return reply(res, 404, kNotFound);
    res.set_content(to_json(*u), kJson);
  });
  svr.Delete(R"(/users/([^/]+))", [&users](const httplib::Request& req, httplib::Response& res) {
    delete_user(users, req, res);
  });
  svr.Get("/metrics", [&users](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(users), "text/plain; version=0.0.4");
  });
  svr.Get("/healthz", [&users](const httplib::Request&, httplib::Response& res) {
    bool db = users.database_ok();
    reply(res, db ? 200 : 503,
          std::string(R"({"status":")") + (db ? "ok" : "fail") + R"(","database":")" +
              (db ? "ok" : "down") + R"(","memcached":")" + users.cache_health() + "\"}");
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    const char* allow = allowed_methods(req.path);
    // No route matched (a handler's 404 has its body): a known path, another method.
    if (res.status == 404 && res.body.empty() && *allow) res.status = 405;
    if (res.status == 404) reply(res, 404, kNotFound);
    if (res.status == 405) {
      reply(res, 405, R"({"detail":"Method Not Allowed"})");
      if (*allow) res.set_header("Allow", allow);
    }
    if (res.status == 413) reply(res, 413, R"({"detail":"Request body too large"})");
    if (res.status == 400 && res.body.empty()) reply(res, 400, R"({"detail":"Bad Request"})");
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
}

void add_request_log(httplib::Server& svr) {
  g_logging = true;  // the pre-routing handler starts each request's trace
  svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - request_start())
                  .count();
    std::string t = RequestTrace::current().end();
    char line[512];
    std::snprintf(line, sizeof line, "%s %s %d %s %.2f ms\n", req.method.c_str(), req.path.c_str(),
                  res.status, t.empty() ? "-" : t.c_str(), us / 1000.0);
    std::fputs(line, stdout);
    std::fflush(stdout);
  });
}

}  // namespace user_service
