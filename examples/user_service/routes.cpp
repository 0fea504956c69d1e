#include "routes.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fastapi_errors.hpp"
#include "outbox_counters.hpp"

namespace user_service {
namespace http = boost::beast::http;

namespace {

constexpr const char* kJson = "application/json";
const std::string kNotFound = R"({"detail":"Not Found"})";

// "/users/<id>": the id, or nullptr for any other path.
bool user_path(const std::string& path, std::string& id) {
  static constexpr std::string_view prefix = "/users/";
  if (path.size() <= prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  if (path.find('/', prefix.size()) != std::string::npos) return false;
  id = path.substr(prefix.size());
  return true;
}

// The methods each path answers, for 405's Allow ("" : an unknown path).
const char* allowed_methods(const std::string& path) {
  std::string id;
  if (path == "/users/") return "GET, POST";
  if (user_path(path, id)) return "GET, PUT, DELETE";
  if (path == "/users" || path == "/metrics" || path == "/healthz") return "GET";
  return "";
}

// Prometheus text: one counter per Stats field and a gauge per Usage field, a line
// per cache (by Options::name).
std::string metrics(AsyncUsers& users) {
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

Response method_not_allowed(const Request& req, const char* allow) {
  Response res = reply(req, 405, R"({"detail":"Method Not Allowed"})");
  res.set(http::field::allow, allow);
  res.prepare_payload();
  return res;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A /users/{id} request: the path's id as FastAPI reads it, then the handler.
template <class Handler>
Task<Response> with_id(const Request& req, const std::string& text, Handler handler) {
  bool too_big = false;
  auto id = parse_path_id(text, too_big);
  if (!id) co_return reply(req, 422, invalid_id_body());
  if (too_big) co_return reply(req, 404, kNotFound);  // a valid integer, but no row can have it
  co_return co_await handler(*id);
}

}  // namespace

Response reply(const Request& req, unsigned status, std::string body) {
  Response res{static_cast<http::status>(status), req.version()};
  res.keep_alive(req.keep_alive());
  if (status != 204) {
    res.set(http::field::content_type, kJson);
    res.body() = std::move(body);
    res.prepare_payload();
  }
  return res;
}

Response refusal(const Request& req, unsigned status) {
  switch (status) {
    case 411:
      return reply(req, 411, R"({"detail":"Length Required"})");
    case 413:
      return reply(req, 413, R"({"detail":"Request body too large"})");
    case 500:
      return reply(req, 500, R"({"detail":"Internal Server Error"})");
    default:
      return reply(req, 400, R"({"detail":"Bad Request"})");
  }
}

std::string request_path(const Request& req) {
  std::string_view target(req.target().data(), req.target().size());
  target = target.substr(0, target.find('?'));
  std::string path;
  path.reserve(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    int hi, lo;
    if (target[i] == '%' && i + 2 < target.size() && (hi = hex(target[i + 1])) >= 0 &&
        (lo = hex(target[i + 2])) >= 0) {
      path += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      path += target[i];
    }
  }
  return path;
}

Task<Response> route(const Request& req, AsyncUsers& users, RequestTrace* trace) {
  const std::string path = request_path(req);
  const http::verb m = req.method();
  std::string id;
  if (user_path(path, id)) {
    if (m == http::verb::get)
      co_return co_await with_id(req, id, [&](long long n) -> Task<Response> {
        auto u = co_await users.find(n, trace);
        co_return u ? reply(req, 200, to_json(*u)) : reply(req, 404, kNotFound);
      });
    if (m == http::verb::put)
      co_return co_await with_id(req, id, [&](long long n) -> Task<Response> {
        auto body = parse_user_body(req.body());
        if (!body.error.empty()) co_return reply(req, 422, body.error);
        // The database, then the invalidation.
        auto u = co_await users.update(n, body.name, body.email, trace);
        co_return u ? reply(req, 200, to_json(*u)) : reply(req, 404, kNotFound);
      });
    if (m == http::verb::delete_)
      co_return co_await with_id(req, id, [&](long long n) -> Task<Response> {
        bool removed = co_await users.remove(n, trace);
        co_return removed ? reply(req, 204, "") : reply(req, 404, kNotFound);
      });
  } else if (path == "/users/") {
    if (m == http::verb::get) co_return reply(req, 200, co_await users.list_body(trace));
    if (m == http::verb::post) {
      auto body = parse_user_body(req.body());
      if (!body.error.empty()) co_return reply(req, 422, body.error);
      co_return reply(req, 201, to_json(co_await users.create(body.name, body.email, trace)));
    }
  } else if (path == "/users" && m == http::verb::get) {
    Response res{http::status::temporary_redirect, req.version()};  // as FastAPI does
    res.keep_alive(req.keep_alive());
    res.set(http::field::location, "/users/");
    res.prepare_payload();  // Content-Length: 0
    co_return res;
  } else if (path == "/metrics" && m == http::verb::get) {
    Response res = reply(req, 200, metrics(users) + OutboxCounters::instance().metrics());
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    co_return res;
  } else if (path == "/healthz" && m == http::verb::get) {
    bool db = co_await users.database_ok();
    std::string cache = co_await users.cache_health();
    co_return reply(req, db ? 200 : 503,
                    std::string(R"({"status":")") + (db ? "ok" : "fail") + R"(","database":")" +
                        (db ? "ok" : "down") + R"(","memcached":")" + cache + "\"}");
  }
  if (const char* allow = allowed_methods(path); *allow) co_return method_not_allowed(req, allow);
  co_return reply(req, 404, kNotFound);
}

}  // namespace user_service
