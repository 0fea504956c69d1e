// The ceiling of the example service on this HTTP stack: cpp-httplib set up as
// user_service sets it up, answering GET /users/5 and GET /users/ (and /healthz) with fixed
// bodies (read from files at start) and doing nothing else. bench/load.sh runs it
// beside the service.
//
//   http_ceiling <port> <threads> <user.json> <list.json>
#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace {

std::string slurp(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <port> <threads> <user.json> <list.json>\n", argv[0]);
    return 2;
  }
  int port = std::atoi(argv[1]);
  int threads = std::atoi(argv[2]);
  const std::string user = slurp(argv[3]), list = slurp(argv[4]);
  httplib::Server svr;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_tcp_nodelay(true);
  svr.set_keep_alive_max_count(100000);
  svr.Get("/users/5", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(user, "application/json");
  });
  svr.Get("/users/", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(list, "application/json");
  });
  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{}", "application/json");
  });
  return svr.listen("127.0.0.1", port) ? 0 : 1;
}
