#include "outbox_relay.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

#include "outbox_counters.hpp"

namespace user_service {

namespace asio = boost::asio;

// The SQLite outbox as the relay's source: reads and removals on the pool. SQLite has
// no row locks to claim with: instances relaying one file may both take a row, and
// invalidate it twice (harmless).
class OutboxRelay::SqliteOutbox final : public cacheaside::OutboxSource<long long> {
 public:
  SqliteOutbox(UserRepository& repo, asio::any_io_executor pool, bool& failing)
      : repo_(repo), pool_(std::move(pool)), failing_(failing) {}

  void async_claim(std::size_t limit,
                   std::function<void(std::exception_ptr, Rows)> handler) override {
    async_on_pool(
        pool_, [this, limit] { return repo_.changes(static_cast<int>(limit)); },
        [this, handler = std::move(handler)](std::exception_ptr e,
                                             std::vector<UserRepository::Change> changes) {
          Rows rows;
          rows.reserve(changes.size());
          for (const auto& c : changes) rows.push_back({c.seq, c.user_id});
          claimed_ = rows.size();
          handler(e, std::move(rows));
        });
  }

  void async_finish(
      std::vector<std::int64_t> done,
      std::function<void(std::exception_ptr, cacheaside::OutboxDepth)> handler) override {
    auto& counters = OutboxCounters::instance();
    counters.relayed += done.size();
    counters.unconfirmed += claimed_ - done.size();
    if (done.empty()) {  // nothing to remove
      if (claimed_ == 0) counters.rows = 0;
      return handler(nullptr, {});
    }
    std::vector<long long> seqs(done.begin(), done.end());
    async_on_pool(
        pool_,
        [this, seqs = std::move(seqs)] {
          repo_.remove_changes(seqs);
          return repo_.outbox_size();
        },
        [this, handler = std::move(handler)](std::exception_ptr e, long long rows) {
          if (!e) {
            OutboxCounters::instance().rows = rows;
            failing_ = false;  // a later failure is told again
          }
          handler(e, cacheaside::OutboxDepth{static_cast<std::uint64_t>(rows < 0 ? 0 : rows), {}});
        });
  }

 private:
  UserRepository& repo_;
  asio::any_io_executor pool_;
  bool& failing_;
  std::size_t claimed_ = 0;
};

OutboxRelay::OutboxRelay(UserRepository& repo, AsyncUsers& users, asio::any_io_executor pool,
                         std::chrono::milliseconds interval, bool quiet)
    : repo_(repo), users_(users), pool_(std::move(pool)), interval_(interval), quiet_(quiet) {
  OutboxCounters::instance().rows = 0;
}

OutboxRelay::~OutboxRelay() = default;

void OutboxRelay::start(asio::any_io_executor io, std::function<void()> ready) {
  cacheaside::OutboxRelayOptions o;
  o.interval = interval_;
  // While memcached confirms nothing, the caches retry their pending deletes
  // themselves: the relay backs off to 1 s instead of adding a batch every interval.
  o.max_backoff = std::max(interval_, std::chrono::milliseconds(1000));
  o.on_error = [this](const std::string& why) {
    ++OutboxCounters::instance().failed_passes;
    if (!failing_ && !quiet_) std::fprintf(stderr, "outbox relay: %s\n", why.c_str());
    failing_ = true;  // said once, until a pass succeeds
  };
  auto apply = [this, io](std::vector<long long> ids,
                          std::function<void(std::exception_ptr, std::vector<bool>)> done) {
    asio::co_spawn(io, users_.apply_changes(std::move(ids)), std::move(done));
  };
  relay_ = std::make_unique<cacheaside::OutboxRelay<long long>>(
      io, std::make_shared<SqliteOutbox>(repo_, pool_, failing_), apply, std::move(o));
  relay_->start(std::move(ready));
}

}  // namespace user_service
