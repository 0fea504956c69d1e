// The HTTP routes of the lesson, over whichever AsyncUsers the service runs with.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>

#include "async_users.hpp"

namespace user_service {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

/// GET/POST /users/, GET/PUT/DELETE /users/{id}, /metrics, /healthz, and FastAPI's
/// answers for unknown paths and methods (404; 405 with Allow). `trace` (may be null)
/// collects what the cache did, for the log line.
Task<Response> route(const Request& req, AsyncUsers& users, RequestTrace* trace);

/// A JSON answer to req: {"detail": ...} bodies and the others.
Response reply(const Request& req, unsigned status, std::string body);

/// The answer to a request refused before its body was read: 400 (unparsable),
/// 411 (a POST, PUT or PATCH that says neither its length nor that it is chunked),
/// 413 (a body over --max-body), 500 (a handler failed).
Response refusal(const Request& req, unsigned status);

/// The request's path without its query, percent-decoded.
std::string request_path(const Request& req);

}  // namespace user_service
