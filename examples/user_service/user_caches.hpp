// The cache layer: users by id under "user_<id>" (120 s) and the list under "users_all"
// (60 s), kept correct by subscribing to the repository's change hooks.
#pragma once

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/json.hpp>
#include <cacheaside/libmemcached.hpp>
#include <memory>
#include <string>
#include <vector>

#include "repository.hpp"
#include "user.hpp"

namespace user_service {

/// What the cache did for the current request (filled from cacheaside events, which run
/// in the calling thread).
struct RequestTrace {
  std::string text;  // e.g. "hit user_5", "miss users_all", "invalidate user_4 users_all"
  void add(const char* what, std::string_view key) {
    if (last != what) {  // "invalidate user_4 users_all", not the verb twice
      if (!text.empty()) text += ' ';
      text += what;
      last = what;
    }
    text += ' ';
    text += key;
  }
  void clear() {
    text.clear();
    last = nullptr;
  }
  const char* last = nullptr;
};
RequestTrace& trace();

class UserCaches {
 public:
  using ById = cacheaside::CacheAside<long long, User, cacheaside::JsonSerializer<User>>;
  using Lists = cacheaside::CacheAside<std::string, std::vector<User>,
                                       cacheaside::JsonSerializer<std::vector<User>>>;
  static constexpr const char* all_key = "users_all";

  UserCaches(std::shared_ptr<cacheaside::Store> store, UserRepository& repo);

  std::optional<User> user(long long id) { return by_id_.get(id); }
  std::vector<User> users() { return lists_.get(all_key).value_or(std::vector<User>{}); }

  ById& by_id() { return by_id_; }
  Lists& lists() { return lists_; }

 private:
  static cacheaside::Options options(const char* name, const char* prefix, int ttl_seconds);
  ById by_id_;
  Lists lists_;
};

}  // namespace user_service
