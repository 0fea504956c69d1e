// The cache-aside layer of the lesson: a user under "user_<id>" for 120 s, the list
// under "users_all" for 60 s; every write goes to the database first, then deletes both
// (and the outbox relay deletes them again for any write, whoever made it).
#pragma once

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/invalidation_fanout.hpp>
#include <cacheaside/json.hpp>
#include <cacheaside/libmemcached.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cache_settings.hpp"
#include "repository.hpp"
#include "user.hpp"
#include "users.hpp"

namespace user_service {

/// The blocking caches (--protocol classic; MemcachedStore), run on the thread pool.
class CachedUsers final : public Users {
 public:
  using ById = cacheaside::CacheAside<long long, User, cacheaside::JsonSerializer<User>>;
  // The list, decoded once with its body rendered (the same bytes in memcached as
  // JsonSerializer<std::vector<User>> writes).
  using Lists =
      cacheaside::CacheAside<std::string, std::shared_ptr<const UserList>, UserListSerializer>;

  CachedUsers(std::shared_ptr<cacheaside::Store> store, UserRepository& repo,
              const CacheSettings& settings = {});

  std::vector<User> list() override;
  std::string list_body() override;
  std::optional<User> find(long long id) override { return by_id_.get(id); }
  User create(const std::string& name, const std::string& email) override;
  std::optional<User> update(long long id, const std::string& name,
                             const std::string& email) override;
  bool remove(long long id) override;
  std::vector<bool> apply_changes(const std::vector<long long>& ids) override {
    return on_change_.apply(ids);
  }

  bool database_ok() override { return repo_.healthy(); }
  std::string cache_health() override;
  std::vector<CacheReport> cache_stats() override;

 private:
  void invalidate(long long id);

  std::shared_ptr<cacheaside::Store> store_;
  UserRepository& repo_;
  ById by_id_;
  Lists lists_;
  cacheaside::InvalidationFanout<long long> on_change_;  // user_change_fanout()
};

}  // namespace user_service
