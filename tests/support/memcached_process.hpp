// A private memcached for tests and benchmarks: started on a free loopback
// port, stopped (SIGKILL + reap) by the destructor. Never touches a server it
// did not start.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cacheaside_test {

/// A TCP port on 127.0.0.1 that nothing listens on right now.
// True when 127.0.0.1:port can be bound now (nothing listens there or uses it as
// a local port).
inline bool bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// A free loopback port below the kernel's ephemeral range. A server the tests kill
/// and restart must find its port free again; a port in the ephemeral range may be
/// handed meanwhile to an outgoing connection, even to a client's own reconnect
/// attempt to that very port (a TCP self-connect while nothing listens), and then
/// the restart cannot bind it.
inline int free_port() {
  int ephemeral_low = 32768;
  {
    std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
    int low = 0;
    if (f >> low && low > 0) ephemeral_low = low;
  }
  int lo = 20000, hi = ephemeral_low - 1;
  if (hi - lo < 1000) lo = std::max(1024, hi - 5000);
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  for (int i = 0; i < 1000 && hi > lo; ++i) {
    int port = lo + static_cast<int>(rng() % static_cast<unsigned>(hi - lo + 1));
    if (bindable(port)) return port;
  }
  throw std::runtime_error("no free port below the ephemeral range");
}

/// True when something accepts TCP connections on 127.0.0.1:port.
inline bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// Path of the memcached binary: $MEMCACHED_BIN, else /usr/bin/memcached.
inline std::string memcached_binary() {
  if (const char* env = std::getenv("MEMCACHED_BIN")) return env;
#ifdef CACHEASIDE_MEMCACHED_BIN
  return CACHEASIDE_MEMCACHED_BIN;  // found at configure time
#else
  return "/usr/bin/memcached";
#endif
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:port (its
/// inode in /proc/net/tcp among the process's descriptors). Asks memcached
/// nothing, so it holds for servers that want TLS or credentials too.
inline bool listens_on(pid_t pid, int port) {
  std::ifstream tcp("/proc/net/tcp");
  std::string line, inode;
  char want[16];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream in(line);
    std::string slot, local, remote, state, queues, timer, retr, uid, timeout;
    in >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
    if (local == want && state == "0A") break;
    inode.clear();
  }
  if (inode.empty()) return false;
  std::string target = "socket:[" + inode + "]";
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return false;
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    char link[64];
    ssize_t n = ::readlink((dir + "/" + e->d_name).c_str(), link, sizeof link - 1);
    if (n > 0 && std::string(link, static_cast<std::size_t>(n)) == target) found = true;
  }
  ::closedir(d);
  return found;
}

/// One memcached process on 127.0.0.1:<free port>.
class MemcachedProcess {
 public:
  /// Starts memcached; extra_args are appended (e.g. {"-I", "2m"}).
  explicit MemcachedProcess(std::vector<std::string> extra_args = {})
      : extra_args_(std::move(extra_args)) {
    // Another test running at the same time may take the same free port first:
    // then ours cannot bind, and a new port is tried.
    for (int attempt = 0;; ++attempt) {
      port_ = free_port();
      try {
        start();
        return;
      } catch (const PortTaken&) {
        if (attempt == 4) throw;
      }
    }
  }
  MemcachedProcess(const MemcachedProcess&) = delete;
  MemcachedProcess& operator=(const MemcachedProcess&) = delete;
  ~MemcachedProcess() { stop(); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  /// libmemcached configuration string for this server.
  std::string config() const { return "--SERVER=127.0.0.1:" + std::to_string(port_); }

  /// Starts (or restarts) the server on the same port.
  void start() {
    if (pid_ > 0) return;
    std::vector<std::string> args = {
        memcached_binary(), "-l", "127.0.0.1", "-p", std::to_string(port_), "-U", "0", "-t", "2"};
    if (::geteuid() == 0) {
      args.push_back("-u");
      args.push_back("nobody");
    }
    for (auto& a : extra_args_) args.push_back(a);
    // Built before fork(): the child of a threaded process may not allocate (another
    // thread may have held the allocator's lock at the fork, and the child would wait
    // for it forever).
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork() failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process (unless -u resets it)
      // Don't hold the test runner's output pipe open if we are ever orphaned.
      int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) {
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!port_open(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (port_open(port_)) throw PortTaken("memcached: port taken meanwhile");
        throw std::runtime_error("memcached exited at start (is " + memcached_binary() +
                                 " installed?)");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        stop();
        throw std::runtime_error("memcached did not start listening");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!listens_on(pid_, port_)) {  // someone else's memcached answered
      stop();
      throw PortTaken("memcached: port " + std::to_string(port_) + " was taken meanwhile");
    }
  }

  /// Kills the server (SIGKILL) and reaps it.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  /// Freezes the server (SIGSTOP): connections stay open but nothing answers. Returns
  /// once the kernel reports it stopped (the signal is asynchronous).
  void pause() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGSTOP);
    std::string stat_path = "/proc/" + std::to_string(pid_) + "/stat";
    for (int i = 0; i < 1000; ++i) {
      std::ifstream f(stat_path);
      std::string line;
      std::getline(f, line);
      auto close = line.rfind(')');  // "pid (comm) S ..."
      if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'T') return;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  /// Thaws a paused server.
  void resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

  struct PortTaken : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

 private:
  std::vector<std::string> extra_args_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace cacheaside_test
