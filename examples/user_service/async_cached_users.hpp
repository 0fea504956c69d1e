// The cache-aside layer on the async caches (--protocol meta, the default): the same keys,
// TTLs and invalidations as CachedUsers, with no thread held while memcached or SQLite works.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/json.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "async_users.hpp"
#include "cache_settings.hpp"
#include "repository.hpp"
#include "user.hpp"

namespace user_service {

class AsyncCachedUsers final : public AsyncUsers {
 public:
  using ById = cacheaside::AsyncCacheAside<long long, User, cacheaside::JsonSerializer<User>>;
  using Lists =
      cacheaside::AsyncCacheAside<std::string, std::shared_ptr<const UserList>, UserListSerializer>;

  /// The loaders and the writes run on `pool`.
  AsyncCachedUsers(std::shared_ptr<cacheaside::AsyncMetaStore> store, UserRepository& repo,
                   boost::asio::any_io_executor pool, const CacheSettings& settings = {});

  Task<std::string> list_body(RequestTrace* trace) override;
  Task<std::optional<User>> find(long long id, RequestTrace* trace) override;
  Task<User> create(std::string name, std::string email, RequestTrace* trace) override;
  Task<std::optional<User>> update(long long id, std::string name, std::string email,
                                   RequestTrace* trace) override;
  Task<bool> remove(long long id, RequestTrace* trace) override;
  Task<std::vector<bool>> apply_changes(std::vector<long long> ids) override;
  Task<bool> database_ok() override;
  Task<std::string> cache_health() override;
  std::vector<CacheReport> cache_stats() override;

 private:
  Task<void> invalidate(long long id, RequestTrace* trace);

  std::shared_ptr<cacheaside::AsyncMetaStore> store_;
  UserRepository& repo_;
  boost::asio::any_io_executor pool_;
  ById by_id_;
  Lists lists_;
  cacheaside::AsyncInvalidationFanout<long long> on_change_;  // user_change_fanout()
};

}  // namespace user_service
