// The data layer: users in SQLite, a small pool of connections. Each write is committed
// when its call returns.
#pragma once

#include <sqlite3.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "user.hpp"

namespace user_service {

class UserRepository {
 public:
  /// Opens (creating if needed) the database; `connections` is the pool size.
  UserRepository(const std::string& path, int connections);
  ~UserRepository();
  UserRepository(const UserRepository&) = delete;
  UserRepository& operator=(const UserRepository&) = delete;

  /// Inserts n users user<i> when the table is empty; returns how many were inserted.
  int seed(int n);

  std::optional<User> find(long long id);
  /// find() for each id, aligned with ids (the caches' bulk loader).
  std::vector<std::optional<User>> find_many(const std::vector<long long>& ids);
  std::vector<User> all();
  User create(const std::string& name, const std::string& email);
  std::optional<User> update(long long id, const std::string& name, const std::string& email);
  bool remove(long long id);
  /// True when the database answers.
  bool healthy();

 private:
  class Lease;  // one pooled connection
  sqlite3* acquire();
  void release(sqlite3* db);

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<sqlite3*> free_;
  std::vector<sqlite3*> all_;
};

}  // namespace user_service
