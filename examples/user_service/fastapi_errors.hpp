// Request validation with the answers FastAPI 0.92 / pydantic 1 give, so clients of the
// original service see the same 422 bodies.
#pragma once

#include <optional>
#include <string>

namespace user_service {

/// Parses a path id as Python's int() would (surrounding blanks, sign, '_' between digits).
/// nullopt: not an integer. Sets too_big for integers outside 64 bits (they exist in
/// Python, but no such row can).
std::optional<long long> parse_path_id(const std::string& text, bool& too_big);

/// The 422 body for a path id that is not an integer.
std::string invalid_id_body();

/// A validated {"name": str, "email": str} body, or the 422 body that FastAPI sends.
struct UserBody {
  std::string name, email;
  std::string error;  // non-empty: the 422 body
};
UserBody parse_user_body(const std::string& body);

/// Where Python's json.loads would fail on `doc`, and why; nullopt if it parses.
struct JsonDecodeError {
  std::string msg;
  std::size_t pos = 0;
};
std::optional<JsonDecodeError> python_json_error(const std::string& doc);

}  // namespace user_service
