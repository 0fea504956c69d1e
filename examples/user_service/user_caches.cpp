#include "user_caches.hpp"

namespace user_service {

RequestTrace& trace() {
  thread_local RequestTrace t;
  return t;
}

cacheaside::Options UserCaches::options(const char* name, const char* prefix, int ttl_seconds) {
  cacheaside::Options o;
  o.name = name;
  o.key_prefix = prefix;
  o.ttl = std::chrono::seconds(ttl_seconds);
  o.on_event = [](const cacheaside::Event& e) {
    switch (e.type) {
      case cacheaside::EventType::hit:
      case cacheaside::EventType::negative_hit:
        trace().add("hit", e.key);
        break;
      case cacheaside::EventType::miss:
        trace().add("miss", e.key);
        break;
      case cacheaside::EventType::invalidate:
        trace().add("invalidate", e.key);
        break;
      case cacheaside::EventType::stale_served:
        trace().add("stale", e.key);
        break;
      case cacheaside::EventType::cache_error:
        trace().add("cache-error", e.key);
        break;
      default:
        break;
    }
  };
  return o;
}

UserCaches::UserCaches(std::shared_ptr<cacheaside::Store> store, UserRepository& repo)
    : by_id_(
          store, [&repo](const long long& id) { return repo.find(id); },
          options("user", "user_", 120)),
      lists_(
          store,
          [&repo](const std::string&) -> std::optional<std::vector<User>> { return repo.all(); },
          options("users", "", 60)) {
  by_id_.set_bulk_loader([&repo](const std::vector<long long>& ids) {
    std::vector<std::optional<User>> out;
    out.reserve(ids.size());
    for (long long id : ids) out.push_back(repo.find(id));
    return out;
  });
  // After every committed write: the user's entry (which may hold a cached "not found")
  // and the list.
  repo.on_change([this](long long id) {
    by_id_.invalidate(id);
    lists_.invalidate(all_key);
  });
}

}  // namespace user_service
