// The data layer: users in SQLite, a small pool of connections. Each write is committed
// when its call returns. Triggers on users append every changed id to the outbox
// table user_changes in the writer's own transaction, whoever the writer is (this
// service, another program, the sqlite3 shell); OutboxRelay invalidates from it.
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

  /// One outbox row: a user id some committed write changed.
  struct Change {
    long long seq;
    long long user_id;
  };
  /// The oldest outbox rows, at most limit.
  std::vector<Change> changes(int limit);
  /// Removes the outbox rows seqs (their invalidations were confirmed).
  void remove_changes(const std::vector<long long>& seqs);
  /// Rows in the outbox.
  long long outbox_size();
  /// Test-only fault point: the process dies (SIGKILL) right after each write commits.
  void crash_after_commit(bool on) { crash_after_commit_ = on; }

 private:
  class Lease;  // one pooled connection
  sqlite3* acquire();
  void release(sqlite3* db);
  void committed() const;

  bool crash_after_commit_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<sqlite3*> free_;
  std::vector<sqlite3*> all_;
};

}  // namespace user_service
