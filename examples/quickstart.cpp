// The DESIGN contract as a runnable program: users cached by id for 120 s under
// "user_<id>", and the whole list for 60 s under "users_all", in front of a small
// in-process "database". It starts nothing itself:
//
//   quickstart --SERVER=127.0.0.1:11211
//
// Without a reachable memcached every get still answers, from the loader.
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/json.hpp>
#include <cacheaside/libmemcached.hpp>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct User {
  int id;
  std::string name;
  std::string email;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(User, id, name, email)

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cout << "usage: " << argv[0] << " '--SERVER=127.0.0.1:11211'\n";
    return 0;
  }
  const std::map<int, User> db = {{1, {1, "Ada", "ada@example.com"}},
                                  {2, {2, "Grace", "grace@example.com"}}};

  auto store = std::make_shared<cacheaside::MemcachedStore>(argv[1]);

  cacheaside::Options by_id;
  by_id.key_prefix = "user_";
  by_id.ttl = std::chrono::seconds(120);
  cacheaside::CacheAside<int, User, cacheaside::JsonSerializer<User>> users(
      store,
      [&](const int& id) -> std::optional<User> {
        auto it = db.find(id);
        if (it == db.end()) return std::nullopt;
        return it->second;
      },
      by_id);

  cacheaside::Options all;
  all.ttl = std::chrono::seconds(60);
  cacheaside::CacheAside<std::string, std::vector<User>,
                         cacheaside::JsonSerializer<std::vector<User>>>
      lists(
          store,
          [&](const std::string&) -> std::optional<std::vector<User>> {
            std::vector<User> out;
            for (const auto& [id, user] : db) out.push_back(user);
            return out;
          },
          all);

  std::optional<User> u = users.get(1);  // hit, or loader + store "user_1"
  std::cout << users.cache_key(1) << ": " << (u ? u->name : "(none)") << '\n';
  users.invalidate(1);  // after an update: delete "user_1"

  std::vector<std::optional<User>> some = users.get_many({1, 2, 3});
  std::cout << "get_many: " << some.size() << " slots, user 3 "
            << (some[2] ? "exists" : "does not exist") << '\n';

  std::optional<std::vector<User>> everyone = lists.get("users_all");
  std::cout << "users_all: " << (everyone ? everyone->size() : 0) << " users\n";

  cacheaside::Stats s = users.stats();
  std::cout << "hits " << s.hits << ", misses " << s.misses << ", loads " << s.loads
            << ", cache errors " << s.cache_errors << '\n';
  return 0;
}
