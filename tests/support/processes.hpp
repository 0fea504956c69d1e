// Runs helper processes side by side.
#pragma once

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace cacheaside_test {

/// Starts every command at once, then collects each one's stdout; each must exit 0.
inline std::vector<std::string> run_all(const std::vector<std::string>& cmds) {
  std::vector<FILE*> pipes;
  for (const auto& c : cmds) pipes.push_back(::popen(c.c_str(), "r"));
  std::vector<std::string> out;
  for (FILE* p : pipes) {
    REQUIRE(p);
    std::string s;
    char buf[256];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
    CHECK(::pclose(p) == 0);
    out.push_back(s);
  }
  return out;
}

}  // namespace cacheaside_test
