// cacheaside: invalidation hooks for PostgreSQL (component postgres, target
// cacheaside::postgres; libpq, Debian: libpq-dev). pg_install_sql() gives the SQL
// that makes a table record its changes in an outbox in the writer's own
// transaction; PgOutbox is the OutboxSource an OutboxRelay claims them from, with
// libpq non-blocking on the relay's executor, LISTEN to wake it at commit.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "detail/postgres/connection.hpp"
#include "detail/postgres/notification.hpp"
#include "error.hpp"
#include "outbox_relay.hpp"

namespace cacheaside {

/// One changed row: its table and its key column's value, as text.
struct PgChange {
  std::string table;  ///< the table the trigger is on
  std::string key;    ///< the key column's value (old or new), as text
};

/// Where a table's changes go, and how the relay talks to the database.
struct PgOutboxOptions {
  /// The outbox table (and the prefix of its trigger function). A plain lower-case
  /// identifier, optionally schema-qualified (`app.cache_outbox`).
  std::string outbox = "cacheaside_outbox";
  /// The NOTIFY channel the triggers signal and the relays LISTEN on.
  std::string channel = "cacheaside_outbox";
  /// Bound of a connect, and of each query (client side: a cut network).
  std::chrono::milliseconds timeout{5000};
  /// The relay's session: a statement running longer is cancelled by the server.
  std::chrono::milliseconds statement_timeout{5000};
  /// The relay's session: a claim held this long with nothing sent (a frozen
  /// relay) ends its session, so its rows go back to the other relays.
  std::chrono::milliseconds idle_in_transaction_timeout{10000};
  /// The changes a notification names (every instance listening hears each one,
  /// though only one relay claims its rows): e.g. `fanout.drop_near(changes)`, so
  /// no instance's near cache serves them until its near log says so. On the
  /// relay's executor.
  std::function<void(const std::vector<PgChange>&)> on_notified;
};

namespace detail {

// A plain identifier, or schema.identifier: lower-case letters, digits, '_'.
inline void check_identifier(const std::string& what, const std::string& id) {
  bool ok = !id.empty() && id.size() <= 120 && id.front() != '.' && id.back() != '.';
  int dots = 0;
  for (std::size_t i = 0; ok && i < id.size(); ++i) {
    char c = id[i];
    bool start = i == 0 || id[i - 1] == '.';
    if (c == '.') {
      ok = ++dots <= 1 && !start;
    } else {
      ok = (c >= 'a' && c <= 'z') || c == '_' || (!start && c >= '0' && c <= '9');
    }
  }
  if (!ok)
    throw Error("cacheaside: postgres: " + what + " '" + id +
                "' is not a lower-case identifier (letters, digits, '_', one optional schema)");
}

// "app.outbox" -> "app.outbox_record", "outbox" -> "outbox_record".
inline std::string suffixed(const std::string& id, const char* suffix) { return id + suffix; }

}  // namespace detail

/// The SQL that makes `table` record every insert, update (both keys when
/// `key_column` changes) and delete in the outbox, in the writer's transaction (a
/// rollback leaves nothing), and NOTIFY the channel with the keys (JSON, when it
/// fits in 7,900 bytes; `{}` otherwise) at commit. Idempotent: run it again after a
/// change of options or a new table. Readable as it is: a DBA may apply it by hand.
/// Throws Error for a name that is not a plain lower-case identifier.
inline std::string pg_install_sql(const std::string& table, const std::string& key_column,
                                  const PgOutboxOptions& o = {}) {
  detail::check_identifier("table", table);
  detail::check_identifier("key column", key_column);
  detail::check_identifier("outbox", o.outbox);
  detail::check_identifier("channel", o.channel);
  if (key_column.find('.') != std::string::npos)
    throw Error("cacheaside: postgres: key column '" + key_column + "' has a '.'");
  const std::string fn = detail::suffixed(o.outbox, "_record");
  const std::string trigger = detail::suffixed(
      table.substr(table.find('.') == std::string::npos ? 0 : table.find('.') + 1), "_outbox");
  return "-- cacheaside: " + table + "'s changes recorded in " + o.outbox +
         ", in the writer's transaction.\n"
         "CREATE TABLE IF NOT EXISTS " +
         o.outbox +
         " (\n"
         "  id bigserial PRIMARY KEY,\n"
         "  source_table text NOT NULL,\n"
         "  key text NOT NULL,\n"
         "  created timestamptz NOT NULL DEFAULT clock_timestamp()\n"
         ");\n"
         "-- One row per changed key: the old one and the new one when the key moves.\n"
         "-- TG_ARGV[0]: the key column; TG_ARGV[1]: the channel.\n"
         "CREATE OR REPLACE FUNCTION " +
         fn +
         "() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
         "DECLARE\n"
         "  old_key text;\n"
         "  new_key text;\n"
         "  keys jsonb := '[]';\n"
         "  payload text;\n"
         "BEGIN\n"
         "  IF TG_OP <> 'INSERT' THEN old_key := to_jsonb(OLD) ->> TG_ARGV[0]; END IF;\n"
         "  IF TG_OP <> 'DELETE' THEN new_key := to_jsonb(NEW) ->> TG_ARGV[0]; END IF;\n"
         "  IF old_key IS NOT NULL THEN\n"
         "    INSERT INTO " +
         o.outbox +
         " (source_table, key) VALUES (TG_TABLE_NAME, old_key);\n"
         "    keys := keys || to_jsonb(old_key);\n"
         "  END IF;\n"
         "  IF new_key IS NOT NULL AND new_key IS DISTINCT FROM old_key THEN\n"
         "    INSERT INTO " +
         o.outbox +
         " (source_table, key) VALUES (TG_TABLE_NAME, new_key);\n"
         "    keys := keys || to_jsonb(new_key);\n"
         "  END IF;\n"
         "  -- Delivered at commit, to the sessions listening then (lost otherwise: the\n"
         "  -- relays poll too). NOTIFY takes at most 8,000 bytes.\n"
         "  payload := jsonb_build_object('t', TG_TABLE_NAME, 'k', keys)::text;\n"
         "  IF octet_length(payload) > 7900 THEN payload := '{}'; END IF;\n"
         "  PERFORM pg_notify(TG_ARGV[1], payload);\n"
         "  RETURN NULL;\n"
         "END\n"
         "$body$;\n"
         "CREATE OR REPLACE TRIGGER " +
         trigger + " AFTER INSERT OR UPDATE OR DELETE ON " + table +
         "\n  FOR EACH ROW EXECUTE FUNCTION " + fn + "('" + key_column + "', '" + o.channel +
         "');\n";
}

/// What a PgOutbox's connection went through.
struct PgOutboxStats {
  std::uint64_t connects = 0;       ///< connections opened (each LISTENs first)
  std::uint64_t reconnects = 0;     ///< of those, after a lost one
  std::uint64_t notifications = 0;  ///< NOTIFYs heard
  std::string last_error;           ///< the last failure, in words
};

/// The outbox of pg_install_sql() as an OutboxSource: claims with
/// `SELECT ... FOR UPDATE SKIP LOCKED` in a transaction that the finish ends, after
/// deleting the confirmed rows (any number of relays share one outbox; a relay that
/// dies lets its rows go with its session, a frozen one after
/// idle_in_transaction_timeout). One connection, libpq non-blocking on `ex`, opened
/// on the first claim and again after it is lost; it LISTENs, and a notification (or
/// the loss of the connection) wakes the relay.
///
/// conninfo: a libpq connection string or URI (`postgresql://user@127.0.0.1:5432/db`).
/// A host name is resolved by libpq while connecting, in the executor's thread:
/// give an address (`hostaddr=` or a numeric host) where that must not wait.
/// Calls from the relay only (one at a time, on `ex`); stats() from any thread.
class PgOutbox : public OutboxSource<PgChange> {
 public:
  /// Connects on the first claim, not here. Throws Error for an outbox or channel
  /// name that is not a plain identifier.
  PgOutbox(asio::any_io_executor ex, std::string conninfo, PgOutboxOptions options = {})
      : ex_(std::move(ex)), conninfo_(std::move(conninfo)), opt_(std::move(options)) {
    detail::check_identifier("outbox", opt_.outbox);
    detail::check_identifier("channel", opt_.channel);
  }
  ~PgOutbox() override { close(); }

  void async_claim(std::size_t limit,
                   std::function<void(std::exception_ptr, Rows)> handler) override {
    connected([this, limit, handler](std::string error) {
      if (!error.empty()) return handler(fail(error), {});
      conn_->async_query("BEGIN; SELECT id, source_table, key FROM " + opt_.outbox +
                             " ORDER BY id LIMIT " + std::to_string(limit) +
                             " FOR UPDATE SKIP LOCKED",
                         [this, handler](std::string error, detail::PgRows rows) {
                           if (!error.empty()) return handler(fail(error), {});
                           in_claim_ = true;
                           Rows out;
                           out.reserve(rows.size());
                           for (auto& r : rows)
                             out.push_back({std::stoll(r.at(0)),
                                            PgChange{std::move(r.at(1)), std::move(r.at(2))}});
                           handler(nullptr, std::move(out));
                         });
    });
  }

  void async_finish(std::vector<std::int64_t> done,
                    std::function<void(std::exception_ptr, OutboxDepth)> handler) override {
    if (!in_claim_ || !conn_ || !conn_->open())
      return handler(fail("postgres: no claim to finish (the connection was lost)"), {});
    in_claim_ = false;
    std::string sql;
    if (!done.empty()) {
      sql = "DELETE FROM " + opt_.outbox + " WHERE id = ANY('{";
      for (std::size_t i = 0; i < done.size(); ++i) sql += (i ? "," : "") + std::to_string(done[i]);
      sql += "}'::bigint[]); ";
    }
    sql +=
        "SELECT count(*), coalesce(floor(extract(epoch FROM clock_timestamp() - min(created)) * "
        "1000), 0)::bigint FROM " +
        opt_.outbox + "; COMMIT";
    conn_->async_query(sql, [this, handler](std::string error, detail::PgRows rows) {
      if (!error.empty()) {
        conn_->close();  // the transaction may be aborted: a new session starts clean
        return handler(fail(error), {});
      }
      OutboxDepth d;
      if (!rows.empty() && rows[0].size() == 2) {
        d.rows = std::stoull(rows[0][0]);
        d.oldest_age = std::chrono::milliseconds(std::stoll(rows[0][1]));
      }
      handler(nullptr, d);
    });
  }

  void on_wake(std::function<void()> wake) override { wake_ = std::move(wake); }

  void close() override {
    if (conn_) conn_->close();
  }

  /// Counters since construction.
  PgOutboxStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  // Opens the connection if it is not: SETs the session's timeouts and LISTENs.
  void connected(std::function<void(std::string)> then) {
    if (conn_ && conn_->open()) return then("");
    bool again = conn_ != nullptr;
    in_claim_ = false;
    conn_ = std::make_shared<detail::PgConnection>(ex_, conninfo_, opt_.timeout);
    std::weak_ptr<detail::PgConnection> weak = conn_;
    conn_->on_notify([this](const std::string&, const std::string& payload) {
      count([](PgOutboxStats& s) { ++s.notifications; });
      detail::PgNotification n;
      if (opt_.on_notified && detail::PgPayloadParser(payload).parse(n)) {
        std::vector<PgChange> changes;
        for (auto& k : n.keys) changes.push_back({n.table, std::move(k)});
        opt_.on_notified(changes);
      }
      if (wake_) wake_();
    });
    conn_->on_lost([this](const std::string& why) {
      count([&](PgOutboxStats& s) { s.last_error = why; });
      if (wake_) wake_();  // reconnect and drain now, not at the backstop
    });
    conn_->async_connect([this, again, then = std::move(then)](std::string error) {
      if (!error.empty()) return then(error);
      count([&](PgOutboxStats& s) {
        ++s.connects;
        if (again) ++s.reconnects;
      });
      conn_->async_query(
          "SET statement_timeout = " + std::to_string(opt_.statement_timeout.count()) +
              "; SET idle_in_transaction_session_timeout = " +
              std::to_string(opt_.idle_in_transaction_timeout.count()) + "; LISTEN " + opt_.channel,
          [then](std::string error, detail::PgRows) { then(error); });
    });
  }

  std::exception_ptr fail(const std::string& why) {
    count([&](PgOutboxStats& s) { s.last_error = why; });
    return std::make_exception_ptr(Error("cacheaside: " + why));
  }

  template <class F>
  void count(F f) {
    std::lock_guard<std::mutex> lock(mu_);
    f(stats_);
  }

  asio::any_io_executor ex_;
  std::string conninfo_;
  PgOutboxOptions opt_;
  std::shared_ptr<detail::PgConnection> conn_;
  bool in_claim_ = false;
  std::function<void()> wake_;
  mutable std::mutex mu_;
  PgOutboxStats stats_;
};

}  // namespace cacheaside
