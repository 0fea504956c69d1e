// Request validation with the answers FastAPI 0.92 / pydantic 1 give: the same statuses
// and 422 body shapes (a body that is not JSON is described by nlohmann's parser, its
// position and words, where FastAPI quotes Python's json module).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace user_service {

/// Parses a path id as Python's int() would (surrounding blanks, sign, '_' between digits).
/// nullopt: not an integer. Sets too_big for integers outside 64 bits (they exist in
/// Python, but no such row can).
std::optional<long long> parse_path_id(const std::string& text, bool& too_big);

/// The 422 body for a path id that is not an integer.
std::string invalid_id_body();

/// Limits of a user body: longer names and emails, deeper JSON are a 422.
inline constexpr std::size_t max_name_chars = 100;
inline constexpr std::size_t max_email_chars = 254;  // the longest address SMTP carries
inline constexpr int max_json_depth = 32;

/// A validated {"name": str, "email": str} body, or the 422 body to send. Also
/// refused: invalid UTF-8, control characters (NUL included) in a field, a field
/// given twice, nesting past max_json_depth, numbers no double holds.
struct UserBody {
  std::string name, email;
  std::string error;  // non-empty: the 422 body
};
UserBody parse_user_body(const std::string& body);

}  // namespace user_service
