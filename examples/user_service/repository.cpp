#include "repository.hpp"

#include <csignal>
#include <stdexcept>

namespace user_service {
namespace {

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw std::runtime_error(std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "sqlite"));
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : "sqlite error";
    sqlite3_free(err);
    throw std::runtime_error(std::string(sql) + ": " + msg);
  }
}

// Runs fn() in one write transaction: committed when it returns, rolled back when it throws.
template <class Fn>
void in_transaction(sqlite3* db, Fn fn) {
  exec(db, "BEGIN IMMEDIATE");
  try {
    fn();
    exec(db, "COMMIT");
  } catch (...) {
    exec(db, "ROLLBACK");
    throw;
  }
}

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    check(sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr), db, sql);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt& bind(int i, long long v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  void reset() { sqlite3_reset(stmt_); }
  long long integer(int c) const { return sqlite3_column_int64(stmt_, c); }
  bool step() {
    int rc = sqlite3_step(stmt_);
    check(rc, db_, "step");
    return rc == SQLITE_ROW;
  }
  User user() const {
    User u;
    u.id = sqlite3_column_int64(stmt_, 0);
    auto text = [&](int c) {
      auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, c));
      return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c)));
    };
    u.name = text(1);
    u.email = text(2);
    return u;
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// The outbox and its hooks. AUTOINCREMENT: a seq is never reused, so a relay that
// removes the rows it read never removes a newer change another relay left it.
// An update that moves a row to another id changes both ids.
const char* const kOutboxSchema = R"sql(
CREATE TABLE IF NOT EXISTS user_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS user_changes_insert AFTER INSERT ON users BEGIN
  INSERT INTO user_changes (user_id) VALUES (NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS user_changes_update AFTER UPDATE ON users BEGIN
  INSERT INTO user_changes (user_id) VALUES (OLD.id);
  INSERT INTO user_changes (user_id) SELECT NEW.id WHERE NEW.id <> OLD.id;
END;
CREATE TRIGGER IF NOT EXISTS user_changes_delete AFTER DELETE ON users BEGIN
  INSERT INTO user_changes (user_id) VALUES (OLD.id);
END;
)sql";

}  // namespace

class UserRepository::Lease {
 public:
  explicit Lease(UserRepository& r) : r_(r), db(r.acquire()) {}
  ~Lease() { r_.release(db); }
  UserRepository& r_;
  sqlite3* db;
};

UserRepository::UserRepository(const std::string& path, int connections) {
  for (int i = 0; i < connections; ++i) {
    sqlite3* db = nullptr;
    int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      throw std::runtime_error("cannot open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db, 5000);
    if (i == 0) {
      exec(db, "PRAGMA journal_mode=WAL");
      exec(db,
           "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
           "email TEXT NOT NULL)");
      exec(db, kOutboxSchema);
    }
    exec(db, "PRAGMA synchronous=NORMAL");
    all_.push_back(db);
    free_.push_back(db);
  }
}

UserRepository::~UserRepository() {
  for (sqlite3* db : all_) sqlite3_close(db);
}

sqlite3* UserRepository::acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty(); });
  sqlite3* db = free_.back();
  free_.pop_back();
  return db;
}

void UserRepository::release(sqlite3* db) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(db);
  }
  cv_.notify_one();
}

int UserRepository::seed(int n) {
  Lease l(*this);
  Stmt count(l.db, "SELECT COUNT(*) FROM users");
  count.step();
  if (count.integer(0) > 0 || n <= 0) return 0;
  in_transaction(l.db, [&] {
    for (int i = 1; i <= n; ++i) {
      Stmt one(l.db, "INSERT INTO users (id, name, email) VALUES (?, ?, ?)");
      one.bind(1, i)
          .bind(2, "user" + std::to_string(i))
          .bind(3, "user" + std::to_string(i) + "@example.com")
          .step();
    }
  });
  return n;
}

std::optional<User> UserRepository::find(long long id) {
  Lease l(*this);
  Stmt q(l.db, "SELECT id, name, email FROM users WHERE id = ?");
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  return q.user();
}

std::vector<std::optional<User>> UserRepository::find_many(const std::vector<long long>& ids) {
  std::vector<std::optional<User>> out;
  out.reserve(ids.size());
  for (long long id : ids) out.push_back(find(id));
  return out;
}

std::vector<User> UserRepository::all() {
  Lease l(*this);
  Stmt q(l.db, "SELECT id, name, email FROM users ORDER BY id");
  std::vector<User> out;
  while (q.step()) out.push_back(q.user());
  return out;
}

User UserRepository::create(const std::string& name, const std::string& email) {
  Lease l(*this);
  Stmt q(l.db, "INSERT INTO users (name, email) VALUES (?, ?)");
  q.bind(1, name).bind(2, email).step();  // committed when it returns (autocommit)
  committed();
  return User{sqlite3_last_insert_rowid(l.db), name, email};
}

std::optional<User> UserRepository::update(long long id, const std::string& name,
                                           const std::string& email) {
  Lease l(*this);
  Stmt q(l.db, "UPDATE users SET name = ?, email = ? WHERE id = ?");
  q.bind(1, name).bind(2, email).bind(3, id).step();
  if (sqlite3_changes(l.db) == 0) return std::nullopt;
  committed();
  return User{id, name, email};
}

bool UserRepository::remove(long long id) {
  Lease l(*this);
  Stmt q(l.db, "DELETE FROM users WHERE id = ?");
  q.bind(1, id).step();
  bool removed = sqlite3_changes(l.db) != 0;
  if (removed) committed();
  return removed;
}

void UserRepository::committed() const {
  if (crash_after_commit_) std::raise(SIGKILL);  // before anyone invalidates
}

std::vector<UserRepository::Change> UserRepository::changes(int limit) {
  Lease l(*this);
  Stmt q(l.db, "SELECT seq, user_id FROM user_changes ORDER BY seq LIMIT ?");
  q.bind(1, limit);
  std::vector<Change> out;
  while (q.step()) out.push_back({q.integer(0), q.integer(1)});
  return out;
}

void UserRepository::remove_changes(const std::vector<long long>& seqs) {
  if (seqs.empty()) return;
  Lease l(*this);
  in_transaction(l.db, [&] {
    Stmt q(l.db, "DELETE FROM user_changes WHERE seq = ?");
    for (long long seq : seqs) {
      q.bind(1, seq).step();
      q.reset();
    }
  });
}

long long UserRepository::outbox_size() {
  Lease l(*this);
  Stmt q(l.db, "SELECT COUNT(*) FROM user_changes");
  q.step();
  return q.integer(0);
}

bool UserRepository::healthy() {
  try {
    Lease l(*this);
    Stmt q(l.db, "SELECT 1");
    return q.step();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace user_service
