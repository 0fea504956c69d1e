#include "fastapi_errors.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

namespace user_service {
namespace {

using nlohmann::ordered_json;

std::string detail(const ordered_json& errors) {
  ordered_json body;
  body["detail"] = errors;
  // Bytes that are not UTF-8 (quoted back from the request) become U+FFFD.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Code points in a UTF-8 string (the parser has checked it is UTF-8).
std::size_t code_points(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool has_control(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7F) return true;
  return false;
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
    if (has_control(out)) {
      errors.push_back(
          error({"body", name}, "control characters are not allowed", "value_error.str.control"));
      return false;
    }
  } else if (v.is_boolean()) {
    out = v.get<bool>() ? "True" : "False";
  } else if (v.is_number_integer()) {
    out = v.dump();
  } else if (v.is_number_float()) {
    // Past 2^53 a double no longer holds what was sent (an integer past 64 bits is
    // read as one): refused rather than stored as something else.
    double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) >= 9007199254740992.0) {
      errors.push_back(error({"body", name}, "number out of range", "value_error.number"));
      return false;
    }
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
  // Nesting deeper than a user can be, or a field given twice (which one would count?),
  // ends the parse: the callback sees every key and every level as it is read.
  const char* refused = nullptr;
  std::vector<std::string> top_keys;
  auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth > max_json_depth) {
      refused = "nested too deeply";
      throw std::invalid_argument(refused);
    }
    if (event == nlohmann::json::parse_event_t::key && depth == 1) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (std::find(top_keys.begin(), top_keys.end(), k) != top_keys.end()) {
        refused = "duplicate key";
        throw std::invalid_argument(refused);
      }
      top_keys.push_back(k);
    }
    return true;
  };
  try {
    doc = nlohmann::json::parse(body, check);  // rejects NaN and Infinity, as JSON does
  } catch (const nlohmann::json::parse_error& e) {
    out.error = json_error_body(body, e);
    return out;
  } catch (const nlohmann::json::out_of_range&) {  // 1e999: no double holds it
    out.error = detail(ordered_json::array(
        {error(ordered_json::array({"body"}), "number out of range", "value_error.number")}));
    return out;
  } catch (const std::invalid_argument&) {
    out.error = detail(ordered_json::array(
        {error(ordered_json::array({"body"}), refused, "value_error.jsondecode")}));
    return out;
  }
  if (!doc.is_object()) {
    out.error = detail(ordered_json::array(
        {error(ordered_json::array({"body"}), "value is not a valid dict", "type_error.dict")}));
    return out;
  }
  ordered_json errors = ordered_json::array();
  auto limited = [&](const char* name, std::string& value, std::size_t limit) {
    if (!str_field(doc, name, value, errors) || code_points(value) <= limit) return;
    ordered_json e =
        error({"body", name},
              ("ensure this value has at most " + std::to_string(limit) + " characters").c_str(),
              "value_error.any_str.max_length");
    e["ctx"] = {{"limit_value", limit}};
    errors.push_back(std::move(e));
  };
  limited("name", out.name, max_name_chars);
  limited("email", out.email, max_email_chars);
  if (!errors.empty()) out.error = detail(errors);
  return out;
}

}  // namespace user_service
