#include "signing_keys.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "private_file.hpp"

namespace user_service {

std::vector<cacheaside::SigningKey> parse_signing_keys(const std::string& text,
                                                       const std::string& source) {
  std::vector<cacheaside::SigningKey> keys;
  std::string normalized = text;
  std::replace(normalized.begin(), normalized.end(), ';', '\n');
  std::istringstream lines(normalized);
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    ++n;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    auto start = line.find_first_not_of(' ');
    if (start == std::string::npos || line[start] == '#') continue;
    auto space = line.find(' ', start);
    if (space == std::string::npos)
      throw std::runtime_error(source + ", line " + std::to_string(n) +
                               ": expected '<id> <secret>'");
    keys.push_back({line.substr(start, space - start), line.substr(space + 1)});
  }
  return keys;
}

std::vector<cacheaside::SigningKey> load_signing_keys(const std::string& file) {
  if (!file.empty()) {
    check_private_file("--signing-keys", file);
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) throw std::runtime_error("--signing-keys: cannot read " + file);
    auto keys = parse_signing_keys(text.str(), file);
    if (keys.empty()) throw std::runtime_error("--signing-keys: " + file + " holds no key");
    return keys;
  }
  if (const char* env = std::getenv("USER_SERVICE_SIGNING_KEYS"))
    return parse_signing_keys(env, "USER_SERVICE_SIGNING_KEYS");
  return {};
}

}  // namespace user_service
