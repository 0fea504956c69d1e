#include "async_cached_users.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cached_users.hpp"

namespace user_service {

namespace asio = boost::asio;
using asio::use_awaitable;

AsyncCachedUsers::AsyncCachedUsers(std::shared_ptr<cacheaside::AsyncMetaStore> store,
                                   UserRepository& repo, asio::any_io_executor pool,
                                   const CacheSettings& settings)
    : store_(store),
      repo_(repo),
      pool_(pool),
      by_id_(
          store,
          cacheaside::blocking_loader(pool, [&repo](const long long& id) { return repo.find(id); }),
          cacheaside::blocking_bulk_loader(
              pool, [&repo](const std::vector<long long>& ids) { return repo.find_many(ids); }),
          cache_options("user", "user_", 120, settings)),
      lists_(store,
             cacheaside::blocking_loader(
                 pool,
                 [&repo](const std::string&) -> std::optional<std::shared_ptr<const UserList>> {
                   return std::make_shared<const UserList>(repo.all());
                 }),
             cache_options("users", "", 60, settings)),
      on_change_(
          user_change_fanout<cacheaside::AsyncInvalidationFanout<long long>>(by_id_, lists_)) {}

Task<std::string> AsyncCachedUsers::list_body(RequestTrace* trace) {
  TraceScope scope(trace, {all_key()});
  std::optional<std::shared_ptr<const UserList>> l;
  if (!lists_.try_get_near(all_key(), l)) l = co_await lists_.async_get(all_key(), use_awaitable);
  co_return l&&* l ? (*l)->body : std::string("[]");
}

Task<std::optional<User>> AsyncCachedUsers::find(long long id, RequestTrace* trace) {
  TraceScope scope(trace, {user_key(id)});
  std::optional<User> u;
  if (by_id_.try_get_near(id, u)) co_return u;  // no completion to wait for
  co_return co_await by_id_.async_get(id, use_awaitable);
}

// Writes: the database first (the source of truth, on the pool), then the cache entries
// it made wrong; as CachedUsers. (The pool's functions capture this frame's variables
// by reference: the frame outlives them, and g++ 12 mishandles the destruction of
// by-value captures in a co_await's operand.)
Task<User> AsyncCachedUsers::create(std::string name, std::string email, RequestTrace* trace) {
  User u = co_await async_on_pool(
      pool_, [&] { return repo_.create(name, email); }, use_awaitable);
  co_await invalidate(u.id, trace);  // user_<id> may hold a cached "not found"
  co_return u;
}

Task<std::optional<User>> AsyncCachedUsers::update(long long id, std::string name,
                                                   std::string email, RequestTrace* trace) {
  auto u = co_await async_on_pool(
      pool_, [&] { return repo_.update(id, name, email); }, use_awaitable);
  if (u) co_await invalidate(id, trace);
  co_return u;
}

Task<bool> AsyncCachedUsers::remove(long long id, RequestTrace* trace) {
  bool removed = co_await async_on_pool(
      pool_, [this, id] { return repo_.remove(id); }, use_awaitable);
  if (removed) co_await invalidate(id, trace);
  co_return removed;
}

// Both deletes at once; an unconfirmed one stays pending (retried, spooled) inside the cache.
Task<void> AsyncCachedUsers::invalidate(long long id, RequestTrace* trace) {
  TraceScope scope(trace, {user_key(id), all_key()});
  std::vector<long long> ids{id};  // (a braced list in a co_await's operand trips g++ 12)
  co_await on_change_.async_apply(std::move(ids), asio::as_tuple(use_awaitable));  // no throw
}

Task<std::vector<bool>> AsyncCachedUsers::apply_changes(std::vector<long long> ids) {
  co_return co_await on_change_.async_apply(std::move(ids), use_awaitable);
}

Task<bool> AsyncCachedUsers::database_ok() {
  co_return co_await async_on_pool(
      pool_, [this] { return repo_.healthy(); }, use_awaitable);
}

Task<std::string> AsyncCachedUsers::cache_health() {
  cacheaside::StoreItem item;
  cacheaside::detail::MetaOp op;
  op.cmd = cacheaside::detail::MetaCmd::get;
  op.key = "healthz";
  op.item = &item;
  co_await store_->async_execute(&op, 1, use_awaitable);
  co_return cacheaside::is_failure(op.status) ? "down" : "ok";
}

std::vector<CacheReport> AsyncCachedUsers::cache_stats() {
  return {{by_id_.options().name, by_id_.stats(), by_id_.usage()},
          {lists_.options().name, lists_.stats(), lists_.usage()}};
}

}  // namespace user_service
