// Runs helper processes side by side.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "support/store_choice.hpp"

namespace cacheaside_test {

/// Starts every command at once, then collects each one's stdout; each must exit 0.
inline std::vector<std::string> run_all(const std::vector<std::string>& cmds) {
  store_choices.fetch_add(1);  // the workers choose by CACHEASIDE_TEST_STORE
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

/// One helper process whose stdout is read line by line, and which the test can
/// kill (SIGKILL: no destructor runs, as in a crash).
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    store_choices.fetch_add(1);  // the worker chooses by CACHEASIDE_TEST_STORE
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    // Before fork(): the child of a threaded process must not allocate.
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    kill();
    if (out_) std::fclose(out_);
  }

  /// The next line of its output, without the newline; empty at EOF.
  std::string line() {
    std::string s;
    for (int c; (c = std::fgetc(out_)) != EOF && c != '\n';) s.push_back(static_cast<char>(c));
    return s;
  }
  /// Sends sig (SIGSTOP, SIGCONT, ...): the process stays, to be killed later.
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  /// SIGKILL and reap.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

}  // namespace cacheaside_test
