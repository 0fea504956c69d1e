// cacheaside: OutboxRelay<Change>, the loop that turns the rows a database's
// triggers write into an outbox into invalidations: claim a batch, fan it out
// through AsyncInvalidationFanout, remove the rows memcached confirmed, back off
// while it confirms nothing (component async; the sources: PgOutbox in
// <cacheaside/postgres.hpp>, or your own OutboxSource).
#pragma once

#include <algorithm>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
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

#include "async_invalidation_fanout.hpp"
#include "detail/miss/load_result.hpp"

namespace cacheaside {

/// One row of an outbox: its id there, and the change it records.
template <class Change>
struct OutboxRow {
  std::int64_t id = 0;  ///< the row's id in the outbox (what async_finish removes)
  Change change{};      ///< what changed
};

/// How deep an outbox is, as a source last saw it.
struct OutboxDepth {
  std::uint64_t rows = 0;                   ///< rows waiting, claimed ones included
  std::chrono::milliseconds oldest_age{0};  ///< age of the oldest (0: empty)
};

/// Where an OutboxRelay's rows come from. The relay makes one call at a time and
/// always follows a claim with a finish (even of nothing), so a source may hold
/// the claimed rows (a transaction, locks) between the two. Handlers may be
/// called on any thread, and at most once each.
template <class Change>
class OutboxSource {
 public:
  /// A claimed batch, oldest first.
  using Rows = std::vector<OutboxRow<Change>>;
  virtual ~OutboxSource() = default;

  /// Claims up to `limit` rows, oldest first, that no other relay holds.
  virtual void async_claim(std::size_t limit,
                           std::function<void(std::exception_ptr, Rows)> handler) = 0;
  /// Removes the claimed rows whose ids are in `done` and lets the others go back
  /// to the outbox (for this relay's next claim, or another's).
  virtual void async_finish(std::vector<std::int64_t> done,
                            std::function<void(std::exception_ptr, OutboxDepth)> handler) = 0;
  /// Called once by the relay: `wake()` asks for a claim now (a notification that
  /// rows were committed). A source without notifications ignores it.
  virtual void on_wake(std::function<void()> wake) { (void)wake; }
  /// Ends what the source keeps open (connections, waits); later calls fail.
  virtual void close() {}
};

/// OutboxRelay's settings.
struct OutboxRelayOptions {
  /// The backstop: a claim at least this often, whatever wake-ups say (they can be
  /// lost: a notification sent while no connection listened).
  std::chrono::milliseconds interval{1000};
  /// Backing off while memcached confirms nothing, or the source fails: the wait
  /// doubles from `interval`'s... up to this (the caches retry what they did not
  /// confirm themselves meanwhile).
  std::chrono::milliseconds max_backoff{5000};
  /// Rows a claim takes: one fanout, one finish.
  std::size_t batch = 512;
  /// Told each failure (the source's or the fanout's), in words.
  std::function<void(const std::string&)> on_error;
};

/// What a relay did since it started.
struct OutboxRelayStats {
  std::uint64_t passes = 0;         ///< claims made
  std::uint64_t wakeups = 0;        ///< claims asked for by the source (notifications)
  std::uint64_t relayed = 0;        ///< rows memcached confirmed, then removed
  std::uint64_t unconfirmed = 0;    ///< rows left for a later pass (memcached did not confirm)
  std::uint64_t failed_passes = 0;  ///< passes the source or the fanout failed
  OutboxDepth depth;                ///< as the last finish saw it
};

/// The relay: runs on `ex` until close(), with no thread of its own. Every row is
/// removed only once memcached confirmed the invalidation of every key it maps to;
/// a row whose keys were not confirmed stays for a later pass (meanwhile the
/// caches retry it themselves). Several relays may share one outbox when the source
/// claims with skip-locked semantics: each row is relayed by one of them at a time.
///
/// Thread-safe: wake(), close() and stats() from any thread. The fanout must outlive
/// the relay's last pass (close() it first, and let its executor run that pass out).
template <class Change>
class OutboxRelay {
 public:
  /// Invalidates a batch: completes with, for each change, whether every key it
  /// maps to was confirmed (AsyncInvalidationFanout::async_apply's contract).
  using Apply = std::function<void(std::vector<Change>,
                                   std::function<void(std::exception_ptr, std::vector<bool>)>)>;

  /// Through a fanout (which must outlive the relay's last pass).
  OutboxRelay(asio::any_io_executor ex, std::shared_ptr<OutboxSource<Change>> source,
              const AsyncInvalidationFanout<Change>& fanout, OutboxRelayOptions options = {})
      : OutboxRelay(std::move(ex), std::move(source),
                    Apply([&fanout](std::vector<Change> changes,
                                    std::function<void(std::exception_ptr, std::vector<bool>)> h) {
                      fanout.async_apply(std::move(changes), std::move(h));
                    }),
                    std::move(options)) {}

  /// Through any apply function.
  OutboxRelay(asio::any_io_executor ex, std::shared_ptr<OutboxSource<Change>> source, Apply apply,
              OutboxRelayOptions options = {})
      : s_(std::make_shared<State>(std::move(ex), std::move(source), std::move(apply),
                                   std::move(options))) {}
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;
  /// Closes it at once (like Asio's own objects: destroy it where its handlers do
  /// not run meanwhile, its executor's thread or with the executor stopped), so a
  /// call in flight ends its source's part now, not in a handler that may never run.
  ~OutboxRelay() {
    s_->closed = true;
    State::shut(s_);
  }

  /// Starts the loop: a claim at once (drains what waits), then on every wake-up
  /// and at least every interval. drained() is called once, when that first drain
  /// ended (the outbox relayed up to a batch that was not full, or a failure).
  void start(std::function<void()> drained = {}) {
    auto s = s_;
    s->drained = std::move(drained);
    s->source->on_wake([w = std::weak_ptr<State>(s)] {
      if (auto s = w.lock()) State::wake(s, true);
    });
    asio::dispatch(s->ex, [s] { State::pass(s); });
  }

  /// A claim now (or right after the one running).
  void wake() { State::wake(s_, false); }

  /// Stops the loop and closes the source; a pass in flight ends without another.
  void close() {
    auto s = s_;
    if (s->closed.exchange(true)) return;
    asio::dispatch(s->ex, [s] { State::shut(s); });
  }

  /// Counters since start().
  OutboxRelayStats stats() const {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->stats;
  }

 private:
  struct State {
    State(asio::any_io_executor e, std::shared_ptr<OutboxSource<Change>> src, Apply a,
          OutboxRelayOptions o)
        : ex(std::move(e)),
          source(std::move(src)),
          apply(std::move(a)),
          opt(std::move(o)),
          timer(ex) {
      wait = opt.interval;
    }

    asio::any_io_executor ex;
    std::shared_ptr<OutboxSource<Change>> source;
    Apply apply;
    std::function<void()> drained;  // on ex: told once
    OutboxRelayOptions opt;
    asio::steady_timer timer;
    std::atomic<bool> closed{false};
    // On ex only:
    bool passing = false;  // a claim, fanout or finish in flight
    bool again = false;    // woken meanwhile: claim again at once
    std::chrono::milliseconds wait;
    // Under mu (stats() reads from any thread):
    mutable std::mutex mu;
    OutboxRelayStats stats;

    static void wake(const std::shared_ptr<State>& s, bool notified) {
      asio::dispatch(s->ex, [s, notified] {
        if (s->closed) return;
        if (notified) s->count([](OutboxRelayStats& st) { ++st.wakeups; });
        if (s->passing) {
          s->again = true;
        } else {
          s->timer.cancel();  // the sleeping loop claims at once
        }
      });
    }

    // Ends what the relay keeps running (twice is harmless).
    static void shut(const std::shared_ptr<State>& s) {
      s->timer.cancel();
      s->source->close();
    }

    template <class F>
    void count(F f) {
      std::lock_guard<std::mutex> lock(mu);
      f(stats);
    }

    void failed(const std::string& why) {
      count([](OutboxRelayStats& st) { ++st.failed_passes; });
      if (opt.on_error) opt.on_error(why);
    }

    // Claim, fan out, finish; then the next pass at once or after a wait.
    static void pass(const std::shared_ptr<State>& s) {
      if (s->closed) return;
      s->passing = true;
      s->again = false;
      s->count([](OutboxRelayStats& st) { ++st.passes; });
      s->source->async_claim(s->opt.batch,
                             [s](std::exception_ptr e, std::vector<OutboxRow<Change>> rows) {
                               asio::dispatch(s->ex, [s, e, rows = std::move(rows)]() mutable {
                                 if (e) {
                                   s->failed("outbox claim: " + detail::exception_text(e));
                                   return ended(s, 0, 0, true);
                                 }
                                 claimed(s, std::move(rows));
                               });
                             });
    }

    static void claimed(const std::shared_ptr<State>& s, std::vector<OutboxRow<Change>> rows) {
      if (rows.empty()) return finish(s, {}, 0);
      std::vector<Change> changes;
      changes.reserve(rows.size());
      for (const auto& r : rows) changes.push_back(r.change);
      auto held = std::make_shared<std::vector<OutboxRow<Change>>>(std::move(rows));
      s->apply(std::move(changes), [s, held](std::exception_ptr e, std::vector<bool> confirmed) {
        asio::dispatch(s->ex, [s, held, e, confirmed = std::move(confirmed)] {
          if (e) s->failed("outbox invalidation: " + detail::exception_text(e));
          std::vector<std::int64_t> done;
          for (std::size_t i = 0; i < held->size(); ++i)
            if (!e && i < confirmed.size() && confirmed[i]) done.push_back((*held)[i].id);
          finish(s, std::move(done), held->size());
        });
      });
    }

    static void finish(const std::shared_ptr<State>& s, std::vector<std::int64_t> done,
                       std::size_t claimed) {
      std::size_t n = done.size();
      s->source->async_finish(std::move(done),
                              [s, n, claimed](std::exception_ptr e, OutboxDepth depth) {
                                asio::dispatch(s->ex, [s, e, depth, n, claimed] {
                                  if (e) {
                                    // The rows stay claimed until the source lets them go (its
                                    // transaction ends with its connection): a later pass, here or
                                    // elsewhere, has them.
                                    s->failed("outbox finish: " + detail::exception_text(e));
                                    return ended(s, claimed, 0, true);
                                  }
                                  s->count([&](OutboxRelayStats& st) {
                                    st.relayed += n;
                                    st.unconfirmed += claimed - n;
                                    st.depth = depth;
                                  });
                                  ended(s, claimed, n, false);
                                });
                              });
    }

    static void ended(const std::shared_ptr<State>& s, std::size_t claimed, std::size_t done,
                      bool failed) {
      s->passing = false;
      if (s->closed) return;
      bool progress = !failed && done == claimed;
      if (progress && (claimed == s->opt.batch || s->again)) return pass(s);  // more may wait
      if (auto d = std::exchange(s->drained, nullptr)) d();
      // Nothing confirmed or a failure: back off (the caches retry their own
      // pending deletes meanwhile); else the backstop interval.
      s->wait = progress ? s->opt.interval : std::min(2 * s->wait, s->opt.max_backoff);
      s->timer.expires_after(s->wait);
      s->timer.async_wait([s](const boost::system::error_code&) {
        // Expired, or cancelled by a wake-up: either way a claim (unless closed).
        pass(s);
      });
    }
  };

  std::shared_ptr<State> s_;
};

}  // namespace cacheaside
