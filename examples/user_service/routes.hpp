// The HTTP routes of the lesson, over whichever Users the service runs with.
#pragma once

#include <httplib.h>

#include <cstddef>

#include "users.hpp"

namespace user_service {

/// GET/POST /users/, GET/PUT/DELETE /users/{id}, /metrics, /healthz, and FastAPI's
/// answers for unknown paths and methods (404; 405 with Allow). Bodies over max_body
/// bytes get 413; a POST, PUT or PATCH that says neither its length nor that it is
/// chunked gets 411 at once (instead of the server waiting for the connection to close).
void add_routes(httplib::Server& server, Users& users, std::size_t max_body);

/// One log line per request on stdout: method, path, status, what the cache did, time.
void add_request_log(httplib::Server& server);

}  // namespace user_service
