// Helper process for the PostgreSQL crash tests: one instance's relay, which the test
// kills or freezes while it holds a claim.
//   relay_worker <memcached config> <conninfo> <idle_in_transaction_ms>
//       relays the outbox of pg_install_sql("users", "id") into user_<id> and
//       users_all; prints "claimed <n>" once it holds n rows, then "confirmed <k> of
//       <n>" when memcached answered for them, "finished <removed>" when the claim
//       ended (every 100 ms at most while idle).
#include <boost/asio/io_context.hpp>
#include <cacheaside/async.hpp>
#include <cacheaside/outbox_relay.hpp>
#include <cacheaside/postgres.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace cacheaside;
namespace asio = boost::asio;
using Cache = AsyncCacheAside<std::string, std::string, StringSerializer>;

// PgOutbox, saying when each claim ended.
class SaidOutbox : public OutboxSource<PgChange> {
 public:
  explicit SaidOutbox(std::shared_ptr<PgOutbox> o) : o_(std::move(o)) {}
  void async_claim(std::size_t limit,
                   std::function<void(std::exception_ptr, Rows)> handler) override {
    o_->async_claim(limit, std::move(handler));
  }
  void async_finish(std::vector<std::int64_t> done,
                    std::function<void(std::exception_ptr, OutboxDepth)> handler) override {
    std::size_t n = done.size();
    o_->async_finish(std::move(done), [n, handler](std::exception_ptr e, OutboxDepth d) {
      if (!e) {
        std::printf("finished %zu\n", n);
        std::fflush(stdout);
      }
      handler(e, d);
    });
  }
  void on_wake(std::function<void()> wake) override { o_->on_wake(std::move(wake)); }
  void close() override { o_->close(); }

 private:
  std::shared_ptr<PgOutbox> o_;
};

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: see the comment at the top of relay_worker.cpp\n");
    return 2;
  }
  asio::io_context io;
  auto store = std::make_shared<AsyncMetaStore>(io.get_executor(), argv[1]);
  auto loader = [](const std::string& k, LoadHandler<std::string> h) { h(nullptr, "row " + k); };
  Options by_id;
  by_id.key_prefix = "user_";
  Cache users(store, loader, by_id), lists(store, loader, Options{});
  AsyncInvalidationFanout<PgChange> fanout(users, [](const PgChange& c) { return c.key; });
  fanout.add(lists, [](const PgChange&) { return std::string("users_all"); });
  PgOutboxOptions po;
  po.idle_in_transaction_timeout = std::chrono::milliseconds(std::stoll(argv[3]));
  auto outbox = std::make_shared<PgOutbox>(io.get_executor(), argv[2], po);
  OutboxRelayOptions ro;
  ro.interval = std::chrono::milliseconds(100);
  ro.max_backoff = std::chrono::milliseconds(100);
  OutboxRelay<PgChange>::Apply apply =
      [&](std::vector<PgChange> changes,
          std::function<void(std::exception_ptr, std::vector<bool>)> done) {
        std::printf("claimed %zu\n", changes.size());
        std::fflush(stdout);
        fanout.async_apply(std::move(changes), [done](std::exception_ptr e, std::vector<bool> ok) {
          std::size_t n = 0;
          for (bool b : ok) n += b;
          std::printf("confirmed %zu of %zu\n", n, ok.size());
          std::fflush(stdout);
          done(e, std::move(ok));
        });
      };
  OutboxRelay<PgChange> relay(io.get_executor(), std::make_shared<SaidOutbox>(outbox), apply, ro);
  relay.start();
  io.run();
  return 0;
}
