#include "cached_users.hpp"

#include "request_trace.hpp"

namespace user_service {

// TTLs as in the lesson; events feed the log lines of the requests waiting on the key.
cacheaside::Options cache_options(const char* name, const char* prefix, int ttl_seconds,
                                  const CacheSettings& settings) {
  cacheaside::Options o;
  o.name = name;
  o.key_prefix = prefix;
  o.ttl = std::chrono::seconds(ttl_seconds);
  if (!settings.spool_prefix.empty())
    o.invalidation_spool = settings.spool_prefix + name + ".spool";
  if (settings.near_sync.count() > 0) {  // hot users answered in-process, as fresh as memcached's
    o.near_ttl = o.ttl;
    o.near_sync = settings.near_sync;
  }
  o.signing_keys = settings.signing_keys;
  o.on_event = [](const cacheaside::Event& e) {
    auto& trace = TraceBoard::instance();
    switch (e.type) {
      case cacheaside::EventType::hit:
      case cacheaside::EventType::negative_hit:
        trace.add("hit", e.key);
        break;
      case cacheaside::EventType::near_hit:
        trace.add("near-hit", e.key);
        break;
      case cacheaside::EventType::miss:
        trace.add("miss", e.key);
        break;
      case cacheaside::EventType::invalidate:
        trace.add("invalidate", e.key);
        break;
      case cacheaside::EventType::stale_served:
        trace.add("stale", e.key);
        break;
      case cacheaside::EventType::cache_error:
        trace.add("cache-error", e.key);
        break;
      case cacheaside::EventType::invalidation_pending:
        trace.add("invalidation-pending", e.key);
        break;
      default:
        break;
    }
  };
  return o;
}

CachedUsers::CachedUsers(std::shared_ptr<cacheaside::Store> store, UserRepository& repo,
                         const CacheSettings& settings)
    : store_(store),
      repo_(repo),
      by_id_(
          store, [&repo](const long long& id) { return repo.find(id); },
          [&repo](const std::vector<long long>& ids) { return repo.find_many(ids); },
          cache_options("user", "user_", 120, settings)),
      lists_(
          store,
          [&repo](const std::string&) -> std::optional<std::shared_ptr<const UserList>> {
            return std::make_shared<const UserList>(repo.all());
          },
          cache_options("users", "", 60, settings)),
      on_change_(user_change_fanout<cacheaside::InvalidationFanout<long long>>(by_id_, lists_)) {}

std::vector<User> CachedUsers::list() {
  auto l = lists_.get(all_key());
  return l && *l ? (*l)->users : std::vector<User>{};
}

std::string CachedUsers::list_body() {
  auto l = lists_.get(all_key());
  return l && *l ? (*l)->body : std::string("[]");
}

// Writes: the database first (the source of truth), then the cache entries it made
// wrong. A read that starts after the invalidation returns never sees the old value;
// an invalidation memcached does not confirm is retried until it does (and spooled).
User CachedUsers::create(const std::string& name, const std::string& email) {
  User u = repo_.create(name, email);
  invalidate(u.id);  // user_<id> may hold a cached "not found"
  return u;
}

std::optional<User> CachedUsers::update(long long id, const std::string& name,
                                        const std::string& email) {
  auto u = repo_.update(id, name, email);
  if (u) invalidate(id);
  return u;
}

bool CachedUsers::remove(long long id) {
  bool removed = repo_.remove(id);
  if (removed) invalidate(id);
  return removed;
}

void CachedUsers::invalidate(long long id) { on_change_.apply({id}); }

std::string CachedUsers::cache_health() {
  cacheaside::StoreItem item;
  return cacheaside::is_failure(store_->get("healthz", item)) ? "down" : "ok";
}

std::vector<CacheReport> CachedUsers::cache_stats() {
  return {{by_id_.options().name, by_id_.stats(), by_id_.usage()},
          {lists_.options().name, lists_.stats(), lists_.usage()}};
}

}  // namespace user_service
