// What the routes ask for: users by id, the list, and writes. Two implementations,
// chosen once at start: straight from the database, or cache-aside in front of it.
#pragma once

#include <cacheaside/stats.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "repository.hpp"
#include "user.hpp"

namespace user_service {

/// The memcached keys of a user and of the list.
inline std::string user_key(long long id) { return "user_" + std::to_string(id); }
inline const std::string& all_key() {
  static const std::string k = "users_all";
  return k;
}

/// What a change to a user makes wrong, in the caches of either driver (Fanout:
/// InvalidationFanout<long long> or AsyncInvalidationFanout<long long>): user_<id> in
/// the cache by id, users_all in the list's. The request path and the outbox relay
/// both invalidate through it.
template <class Fanout, class ById, class Lists>
Fanout user_change_fanout(ById& by_id, Lists& lists) {
  Fanout f(by_id, [](long long id) { return id; });
  f.add(lists, [](long long) { return all_key(); });
  return f;
}

/// One cache's counters and table sizes, by its Options::name.
struct CacheReport {
  std::string name;
  cacheaside::Stats stats;
  cacheaside::Usage usage;
};

class Users {
 public:
  virtual ~Users() = default;
  virtual std::vector<User> list() = 0;
  /// The list as the HTTP body (GET /users/).
  virtual std::string list_body() { return to_json(list()); }
  virtual std::optional<User> find(long long id) = 0;
  virtual User create(const std::string& name, const std::string& email) = 0;
  virtual std::optional<User> update(long long id, const std::string& name,
                                     const std::string& email) = 0;
  virtual bool remove(long long id) = 0;
  /// What changes to these users made wrong in the caches, invalidated (the outbox
  /// relay); element i: memcached confirmed it. Without a cache, nothing is wrong.
  virtual std::vector<bool> apply_changes(const std::vector<long long>& ids) {
    return std::vector<bool>(ids.size(), true);
  }

  /// True when the database answers.
  virtual bool database_ok() = 0;
  /// "ok", "down", or "disabled" (no cache).
  virtual std::string cache_health() { return "disabled"; }
  /// Each cache's counters; none without a cache.
  virtual std::vector<CacheReport> cache_stats() { return {}; }
};

/// Every request goes to SQLite (--no-cache).
class DatabaseUsers final : public Users {
 public:
  explicit DatabaseUsers(UserRepository& repo) : repo_(repo) {}
  std::vector<User> list() override { return repo_.all(); }
  std::optional<User> find(long long id) override { return repo_.find(id); }
  User create(const std::string& name, const std::string& email) override {
    return repo_.create(name, email);
  }
  std::optional<User> update(long long id, const std::string& name,
                             const std::string& email) override {
    return repo_.update(id, name, email);
  }
  bool remove(long long id) override { return repo_.remove(id); }
  bool database_ok() override { return repo_.healthy(); }

 private:
  UserRepository& repo_;
};

}  // namespace user_service
