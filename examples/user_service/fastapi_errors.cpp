#include "fastapi_errors.hpp"

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

// A scanner with Python's json module's error messages and positions (CPython
// Lib/json/decoder.py and scanner.py), for reporting only.
class PyScanner {
 public:
  explicit PyScanner(const std::string& s) : s_(s) {}

  std::optional<JsonDecodeError> run() {
    std::size_t i = ws(0);
    if (!value(i)) return err_;
    i = ws(i);
    if (i != s_.size()) return JsonDecodeError{"Extra data", i};
    return std::nullopt;
  }

 private:
  std::size_t ws(std::size_t i) const {
    while (i < s_.size() && (s_[i] == ' ' || s_[i] == '\t' || s_[i] == '\n' || s_[i] == '\r')) ++i;
    return i;
  }
  bool fail(const char* msg, std::size_t pos) {
    err_ = JsonDecodeError{msg, pos};
    return false;
  }
  bool literal(std::size_t& i, const char* word) {
    std::size_t n = std::char_traits<char>::length(word);
    if (s_.compare(i, n, word) != 0) return fail("Expecting value", i);
    i += n;
    return true;
  }
  bool number(std::size_t& i) {
    std::size_t j = i;
    if (j < s_.size() && s_[j] == '-') ++j;
    if (j >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[j])))
      return fail("Expecting value", i);
    if (s_[j] == '0') {
      ++j;
    } else {
      while (j < s_.size() && std::isdigit(static_cast<unsigned char>(s_[j]))) ++j;
    }
    if (j + 1 < s_.size() && s_[j] == '.' && std::isdigit(static_cast<unsigned char>(s_[j + 1]))) {
      j += 2;
      while (j < s_.size() && std::isdigit(static_cast<unsigned char>(s_[j]))) ++j;
    }
    if (j < s_.size() && (s_[j] == 'e' || s_[j] == 'E')) {
      std::size_t k = j + 1;
      if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
      if (k < s_.size() && std::isdigit(static_cast<unsigned char>(s_[k]))) {
        while (k < s_.size() && std::isdigit(static_cast<unsigned char>(s_[k]))) ++k;
        j = k;
      }
    }
    i = j;
    return true;
  }
  // i at the opening quote.
  bool string(std::size_t& i) {
    std::size_t begin = i++;
    while (true) {
      if (i >= s_.size()) return fail("Unterminated string starting at", begin);
      unsigned char c = static_cast<unsigned char>(s_[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20) return fail("Invalid control character at", i);
      if (c == '\\') {
        if (i + 1 >= s_.size()) return fail("Unterminated string starting at", begin);
        char e = s_[i + 1];
        if (e == 'u') {
          for (std::size_t k = i + 2; k < i + 6; ++k)
            if (k >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[k])))
              return fail("Invalid \\uXXXX escape", i + 1);
          i += 6;
          continue;
        }
        if (std::string("\"\\/bfnrt").find(e) == std::string::npos)
          return fail("Invalid \\escape", i);
        i += 2;
        continue;
      }
      ++i;
    }
  }
  bool value(std::size_t& i) {
    if (i >= s_.size()) return fail("Expecting value", i);
    switch (s_[i]) {
      case '"':
        return string(i);
      case '{':
        return object(i);
      case '[':
        return array(i);
      case 'n':
        return literal(i, "null");
      case 't':
        return literal(i, "true");
      case 'f':
        return literal(i, "false");
      case 'N':
        return literal(i, "NaN");
      case 'I':
        return literal(i, "Infinity");
      default:
        if (s_.compare(i, 9, "-Infinity") == 0) {
          i += 9;
          return true;
        }
        return number(i);
    }
  }
  bool object(std::size_t& i) {
    i = ws(i + 1);
    if (i < s_.size() && s_[i] == '}') {
      ++i;
      return true;
    }
    while (true) {
      if (i >= s_.size() || s_[i] != '"')
        return fail("Expecting property name enclosed in double quotes", i);
      if (!string(i)) return false;
      i = ws(i);
      if (i >= s_.size() || s_[i] != ':') return fail("Expecting ':' delimiter", i);
      i = ws(i + 1);
      if (!value(i)) return false;
      i = ws(i);
      if (i < s_.size() && s_[i] == '}') {
        ++i;
        return true;
      }
      if (i >= s_.size() || s_[i] != ',') return fail("Expecting ',' delimiter", i);
      i = ws(i + 1);
    }
  }
  bool array(std::size_t& i) {
    i = ws(i + 1);
    if (i < s_.size() && s_[i] == ']') {
      ++i;
      return true;
    }
    while (true) {
      if (!value(i)) return false;
      i = ws(i);
      if (i < s_.size() && s_[i] == ']') {
        ++i;
        return true;
      }
      if (i >= s_.size() || s_[i] != ',') return fail("Expecting ',' delimiter", i);
      i = ws(i + 1);
    }
  }

  const std::string& s_;
  JsonDecodeError err_;
};

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

}  // namespace

std::optional<JsonDecodeError> python_json_error(const std::string& doc) {
  return PyScanner(doc).run();
}

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
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded()) {
    auto e = python_json_error(body);
    JsonDecodeError err = e ? *e : JsonDecodeError{"Expecting value", 0};
    std::size_t line = 1, last_nl = std::string::npos;
    for (std::size_t i = 0; i < err.pos && i < body.size(); ++i)
      if (body[i] == '\n') {
        ++line;
        last_nl = i;
      }
    std::size_t col = last_nl == std::string::npos ? err.pos + 1 : err.pos - last_nl;
    std::string msg = err.msg + ": line " + std::to_string(line) + " column " +
                      std::to_string(col) + " (char " + std::to_string(err.pos) + ")";
    ordered_json e1;
    e1["loc"] = {"body", err.pos};
    e1["msg"] = msg;
    e1["type"] = "value_error.jsondecode";
    ordered_json ctx;
    ctx["msg"] = err.msg;
    ctx["doc"] = body;
    ctx["pos"] = err.pos;
    ctx["lineno"] = line;
    ctx["colno"] = col;
    e1["ctx"] = ctx;
    out.error = detail(ordered_json::array({e1}));
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
