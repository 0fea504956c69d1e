// The HTTP routes of the lesson, over whichever Users the service runs with.
#pragma once

#include <httplib.h>

#include "users.hpp"

namespace user_service {

/// GET/POST /users/, GET/PUT/DELETE /users/{id}, /metrics, /healthz, and FastAPI's
/// answers for unknown paths and methods.
void add_routes(httplib::Server& server, Users& users);

/// One log line per request on stdout: method, path, status, what the cache did, time.
void add_request_log(httplib::Server& server);

}  // namespace user_service
