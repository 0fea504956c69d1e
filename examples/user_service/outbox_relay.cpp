#include "outbox_relay.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

namespace user_service {

namespace asio = boost::asio;
using asio::use_awaitable;

namespace {
constexpr int kBatch = 512;  // rows a pass takes: one fanout, one delete transaction
}

OutboxRelay::OutboxRelay(UserRepository& repo, AsyncUsers& users, asio::any_io_executor pool,
                         std::chrono::milliseconds interval, bool quiet)
    : repo_(repo), users_(users), pool_(std::move(pool)), interval_(interval), quiet_(quiet) {}

void OutboxRelay::start(asio::any_io_executor io, std::function<void()> ready) {
  asio::co_spawn(io, run(std::move(ready)), asio::detached);
}

Task<void> OutboxRelay::run(std::function<void()> ready) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  bool failing = false;
  for (;;) {
    bool more = false;
    try {
      more = co_await pass();
      failing = false;
    } catch (const std::exception& e) {  // the database: tried again next time
      if (!failing && !quiet_) std::fprintf(stderr, "outbox relay: %s\n", e.what());
      failing = true;
    }
    if (more) continue;
    if (ready) std::exchange(ready, nullptr)();
    timer.expires_after(interval_);
    co_await timer.async_wait(use_awaitable);
  }
}

Task<bool> OutboxRelay::pass() {
  // (The pool's functions capture by reference: see async_cached_users.cpp.)
  auto rows = co_await async_on_pool(
      pool_, [&] { return repo_.changes(kBatch); }, use_awaitable);
  if (rows.empty()) co_return false;
  std::vector<long long> ids;
  ids.reserve(rows.size());
  for (const auto& r : rows) ids.push_back(r.user_id);
  std::vector<bool> confirmed = co_await users_.apply_changes(ids);
  std::vector<long long> done;
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (confirmed[i]) done.push_back(rows[i].seq);
  // Only confirmed rows go: the others are pending in the caches too, and stay here
  // for the next pass (and for the other instances).
  co_await async_on_pool(
      pool_,
      [&] {
        repo_.remove_changes(done);
        return true;
      },
      use_awaitable);
  co_return done.size() == rows.size() && rows.size() == static_cast<std::size_t>(kBatch);
}

}  // namespace user_service
