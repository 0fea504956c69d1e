#include "outbox_relay.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

#include "outbox_counters.hpp"

namespace user_service {

namespace asio = boost::asio;
using asio::use_awaitable;

namespace {
constexpr std::chrono::milliseconds kMaxWait(1000);
}

OutboxRelay::OutboxRelay(UserRepository& repo, AsyncUsers& users, asio::any_io_executor pool,
                         std::chrono::milliseconds interval, bool quiet)
    : repo_(repo), users_(users), pool_(std::move(pool)), interval_(interval), quiet_(quiet) {
  OutboxCounters::instance().rows = 0;
}

void OutboxRelay::start(asio::any_io_executor io, std::function<void()> ready) {
  asio::co_spawn(io, run(std::move(ready)), asio::detached);
}

Task<void> OutboxRelay::run(std::function<void()> ready) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto& counters = OutboxCounters::instance();
  auto wait = interval_;
  bool failing = false;
  for (;;) {
    Pass p;
    try {
      p = co_await pass();
      failing = false;
    } catch (const std::exception& e) {  // the database: tried again next time
      ++counters.failed_passes;
      if (!failing && !quiet_) std::fprintf(stderr, "outbox relay: %s\n", e.what());
      failing = true;
    }
    if (p.done == kBatch) continue;  // a full batch applied: more may wait
    if (ready) std::exchange(ready, nullptr)();
    // While memcached confirms nothing, the caches retry their pending deletes
    // themselves: the relay backs off to 1 s instead of adding a batch every interval.
    wait = p.done < p.read || failing ? std::min(2 * wait, kMaxWait) : interval_;
    timer.expires_after(std::max(wait, interval_));
    co_await timer.async_wait(use_awaitable);
  }
}

Task<OutboxRelay::Pass> OutboxRelay::pass() {
  auto& counters = OutboxCounters::instance();
  // (The pool's functions capture by reference: see async_cached_users.cpp.)
  auto rows = co_await async_on_pool(
      pool_, [&] { return repo_.changes(static_cast<int>(kBatch)); }, use_awaitable);
  if (rows.empty()) {
    counters.rows = 0;
    co_return Pass{};
  }
  std::vector<long long> ids;
  ids.reserve(rows.size());
  for (const auto& r : rows) ids.push_back(r.user_id);
  std::vector<bool> confirmed = co_await users_.apply_changes(ids);
  std::vector<long long> done;
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (confirmed[i]) done.push_back(rows[i].seq);
  // Only confirmed rows go: the others are pending in the caches too, and stay here
  // for the next pass (and for the other instances).
  counters.rows = co_await async_on_pool(
      pool_,
      [&] {
        repo_.remove_changes(done);
        return repo_.outbox_size();
      },
      use_awaitable);
  counters.relayed += done.size();
  counters.unconfirmed += rows.size() - done.size();
  co_return Pass{rows.size(), done.size()};
}

}  // namespace user_service
