#include "fastapi_errors.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <nlohmann/json.hpp>

namespace user_service {
namespace {

using nlohmann::ordered_json;

std::string detail(const ordered_json& errors) {
  ordered_json body;
  body["detail"] = errors;
  return body.dump();
}

ordered_json error(ordered_json loc, const char* msg, const char* type) {
  ordered_json e;
  e["loc"] = std::move(loc);
  e["msg"] = msg;
  e["type"] = type;
  return e;
}

// pydantic 1's str field: str as is, numbers as str(v), anything else an error.
bool str_field(const nlohmann::json& body, const char* name, std::string& out,
               ordered_json& errors) {
  auto it = body.find(name);
  if (it == body.end()) {
    errors.push_back(error({"body", name}, "field required", "value_error.missing"));
    return false;
  }
  const auto& v = *it;
  if (v.is_string()) {
    out = v.get<std::string>();
  } else if (v.is_boolean()) {
    out = v.get<bool>() ? "True" : "False";
  } else if (v.is_number_integer()) {
    out = v.dump();
  } else if (v.is_number_float()) {
    out = v.dump();  // 1.5 -> "1.5", like Python's str()
  } else if (v.is_null()) {
    errors.push_back(
        error({"body", name}, "none is not an allowed value", "type_error.none.not_allowed"));
    return false;
  } else {
    errors.push_back(error({"body", name}, "str type expected", "type_error.str"));
    return false;
  }
  return true;
}

// FastAPI's 422 for a body that is not JSON, with the parser's own position and words.
std::string json_error_body(const std::string& body, const nlohmann::json::parse_error& e) {
  // e.byte counts from 1 and points at the last byte read: the one that broke the parse.
  std::size_t pos = std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, body.size());
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < pos; ++i)
    if (body[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  std::size_t col = pos - line_start + 1;
  std::string what = e.what();  // "[json.exception.parse_error.101] parse error at ...: why"
  auto colon = what.find(": ");
  std::string msg = colon == std::string::npos ? what : what.substr(colon + 2);
  ordered_json err;
  err["loc"] = {"body", pos};
  err["msg"] = msg + ": line " + std::to_string(line) + " column " + std::to_string(col) +
               " (char " + std::to_string(pos) + ")";
  err["type"] = "value_error.jsondecode";
  ordered_json ctx;
  ctx["msg"] = msg;
  ctx["doc"] = body;
  ctx["pos"] = pos;
  ctx["lineno"] = line;
  ctx["colno"] = col;
  err["ctx"] = ctx;
  return detail(ordered_json::array({err}));
}

}  // namespace

std::optional<long long> parse_path_id(const std::string& text, bool& too_big) {
  too_big = false;
  std::size_t b = 0, e = text.size();
  while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
  if (b == e) return std::nullopt;
  bool neg = false;
  if (text[b] == '+' || text[b] == '-') {
    neg = text[b] == '-';
    ++b;
  }
  if (b == e) return std::nullopt;
  unsigned long long v = 0;
  bool prev_digit = false;
  for (std::size_t i = b; i < e; ++i) {
    char c = text[i];
    if (c == '_') {
      if (!prev_digit || i + 1 == e || !std::isdigit(static_cast<unsigned char>(text[i + 1])))
        return std::nullopt;
      prev_digit = false;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    prev_digit = true;
    if (v > (std::numeric_limits<unsigned long long>::max() - 9) / 10) {
      too_big = true;
    } else {
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
  }
  if (too_big || v > static_cast<unsigned long long>(std::numeric_limits<long long>::max())) {
    too_big = true;
    return 0;
  }
  return neg ? -static_cast<long long>(v) : static_cast<long long>(v);
}

std::string invalid_id_body() {
  return detail(ordered_json::array(
      {error({"path", "id"}, "value is not a valid integer", "type_error.integer")}));
}

UserBody parse_user_body(const std::string& body) {
  UserBody out;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(body);  // rejects NaN and Infinity, as JSON does
  } catch (const nlohmann::json::parse_error& e) {
    out.error = json_error_body(body, e);
    return out;
  }
  if (!doc.is_object()) {
    out.error = detail(ordered_json::array(
        {error(ordered_json::array({"body"}), "value is not a valid dict", "type_error.dict")}));
    return out;
  }
  ordered_json errors = ordered_json::array();
  str_field(doc, "name", out.name, errors);
  str_field(doc, "email", out.email, errors);
  if (!errors.empty()) out.error = detail(errors);
  return out;
}

}  // namespace user_service
