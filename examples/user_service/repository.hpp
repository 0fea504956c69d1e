// The data layer: users in SQLite, and change hooks that announce "user N changed"
// after each successful commit.
#pragma once

#include <sqlite3.h>

#include <condition_variable>
#include <functional>
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

  /// Called with the id of a user after a write to it was committed.
  void on_change(std::function<void(long long id)> hook);

  /// Inserts n users user<i> when the table is empty; returns how many were inserted.
  int seed(int n);

  std::optional<User> find(long long id);
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
  void changed(long long id);

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<sqlite3*> free_;
  std::vector<sqlite3*> all_;
  std::mutex hooks_mu_;
  std::vector<std::function<void(long long)>> hooks_;
};

}  // namespace user_service
