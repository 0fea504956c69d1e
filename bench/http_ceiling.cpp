// The ceiling of the example service on its HTTP stack: the service's own Beast server
// and routes (examples/user_service/http_server.cpp, routes.cpp) over users that answer
// GET /users/5 and GET /users/ with fixed records read at start, with no cache, no
// database and no other thread behind them. bench/load.sh runs it beside the service.
//
//   http_ceiling <port> <threads> <user.json> <list.json>
#include <boost/asio/ip/address.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "http_server.hpp"
#include "io_threads.hpp"

namespace {

std::string slurp(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

using user_service::RequestTrace;
using user_service::Task;
using user_service::User;

// Answers without suspending: what the routes cost with nothing behind them.
class FixedUsers final : public user_service::AsyncUsers {
 public:
  FixedUsers(User user, std::string list) : user_(std::move(user)), list_(std::move(list)) {}
  Task<std::string> list_body(RequestTrace*) override { co_return list_; }
  Task<std::optional<User>> find(long long, RequestTrace*) override { co_return user_; }
  Task<User> create(std::string, std::string, RequestTrace*) override { co_return user_; }
  Task<std::optional<User>> update(long long, std::string, std::string, RequestTrace*) override {
    co_return user_;
  }
  Task<bool> remove(long long, RequestTrace*) override { co_return false; }
  Task<std::vector<bool>> apply_changes(std::vector<long long> ids) override {
    co_return std::vector<bool>(ids.size(), true);
  }
  Task<bool> database_ok() override { co_return true; }
  Task<std::string> cache_health() override { co_return "disabled"; }
  std::vector<user_service::CacheReport> cache_stats() override { return {}; }

 private:
  User user_;
  std::string list_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <port> <threads> <user.json> <list.json>\n", argv[0]);
    return 2;
  }
  namespace asio = boost::asio;
  int port = std::atoi(argv[1]);
  int threads = std::max(1, std::atoi(argv[2]));
  User user;
  try {
    user = nlohmann::json::parse(slurp(argv[3])).get<User>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s is not a user record: %s\n", argv[0], argv[3], e.what());
    return 2;
  }
  FixedUsers users(std::move(user), slurp(argv[4]));
  user_service::IoThreads io(threads);  // as the service runs them
  user_service::HttpOptions http;
  http.log = false;
  user_service::HttpServer server(
      io.contexts(), {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)},
      users, http);
  server.start();
  io.run();
  return 0;
}
