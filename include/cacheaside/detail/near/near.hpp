// A near cache: the table of decoded values, the log that keeps it coherent
// with other processes, and who reads the log (internal).
//
// The rule that bounds staleness between processes: an entry is served only
// while this process has read the log successfully within the last
// `near_sync` (counted from when that read began). A write elsewhere appends
// to the log before it returns, so a read that began after it drops the key;
// memcached away or partitioned stops near hits after `near_sync` too.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../options.hpp"
#include "../../store.hpp"
#include "../reporter.hpp"
#include "near_cache.hpp"
#include "near_log.hpp"

namespace cacheaside::detail {

/// Who reads a near cache's log: a thread of its own every near_sync / 2 (the
/// blocking cache); its owner, calling sync_now() (the simulation, on its clock);
/// or its owner on demand (the async cache, on the executor: see read_on_demand).
enum class NearReading { thread, owner, on_demand };

template <class Value>
class Near {
 public:
  using Table = NearCache<Value>;
  using Ticket = typename Table::Ticket;
  static constexpr std::size_t ring = 1024;  // log slots

  /// log_base: the memcached key the log's keys start with. The first two ways
  /// of reading read it once here.
  Near(const Options& opt, std::shared_ptr<Store> store, std::string log_base,
       std::shared_ptr<Clock> clock, const Reporter& report,
       NearReading reading = NearReading::thread)
      : ttl_(opt.near_ttl),
        sync_(opt.near_sync),
        clock_(std::move(clock)),
        report_(report),
        table_(opt.near_capacity),
        log_(std::move(store), std::move(log_base), ring, clock_, opt.signing_keys) {
    if (reading == NearReading::on_demand) return;
    sync_now();
    if (reading != NearReading::thread) return;
    try {
      thread_ = std::thread([this] { run(); });
    } catch (const std::system_error&) {
      // No thread: the log is never read again, so near hits stop after near_sync.
    }
  }

  Near(const Near&) = delete;
  Near& operator=(const Near&) = delete;

  ~Near() {
    stop();
    if (thread_.joinable()) thread_.join();
  }

  /// Ends the reader after the read it is in, if any (without waiting for it).
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }

  /// True (out set) on a near hit.
  bool get(const std::string& mkey, std::optional<Value>& out) {
    if (due_) read_if_due();
    return current() && table_.find(mkey, clock_->unix_ms(), out);
  }

  /// NearReading::on_demand: due() is called from a get when the last read
  /// began near_sync / 2 ago (or none has), one read at a time; the owner then
  /// reads the log (begin_read(), the counter, read_counted(), the slots,
  /// read_slots()) and ends with read_ended(). An idle cache reads nothing,
  /// and its entries are not served once near_sync has passed.
  void read_on_demand(std::function<void()> due) { due_ = std::move(due); }

  /// The start of a read; returns when it began.
  Clock::time_point begin_read() {
    last_attempt_.store(clock_->now().time_since_epoch().count(), std::memory_order_relaxed);
    return clock_->now();
  }
  bool read_counted(StoreStatus st, std::uint64_t now, NearLog::Read& r, NearLog::Slots& s) {
    std::lock_guard<std::mutex> one(sync_mu_);
    return log_.counted(st, now, r, s);
  }
  void read_slots(StoreStatus st, const NearLog::Slots& s, const std::vector<StoreItem>& items,
                  const std::vector<char>& found, NearLog::Read& r) {
    std::lock_guard<std::mutex> one(sync_mu_);
    log_.slots_read(st, s, items, found, r);
  }
  /// The read that began at `started` found r: applied; the next may begin.
  void read_ended(const NearLog::Read& r, Clock::time_point started) {
    HeldEvents told(report_);  // told after the lock: a hook may call the cache
    {
      std::lock_guard<std::mutex> one(sync_mu_);
      apply(r, started, told);
    }
    reading_.store(false, std::memory_order_release);
  }

  Ticket ticket(const std::string& mkey) const { return table_.ticket(mkey); }

  /// A value read from memcached at ticket t, fresh until expiry_ms (unix ms;
  /// 0: unknown, then not kept).
  void offer(const std::string& mkey, const std::optional<Value>& v, std::int64_t expiry_ms,
             Ticket t) {
    if (expiry_ms == 0) return;
    std::int64_t until = std::min<std::int64_t>(expiry_ms, clock_->unix_ms() + ttl_.count());
    auto p = std::make_shared<const std::optional<Value>>(v);
    if (std::size_t evicted = table_.insert(mkey, std::move(p), until, t)) {
      report_.near_evicted(evicted);
    }
  }

  void drop(const std::string& mkey) { table_.drop(mkey); }
  void drop_all() { table_.drop_all(); }

  /// Tells the other processes (two round trips); "*" for everything.
  StoreStatus publish(const std::string& mkey) { return log_.append(mkey); }
  /// The log publish() appends to (for a driver that sends the append itself).
  const NearLog& log() const { return log_; }

  /// Reads the log now (the background does every near_sync / 2).
  void sync_now() {
    HeldEvents told(report_);  // told after the lock: a hook may call the cache
    std::lock_guard<std::mutex> one(sync_mu_);
    auto started = clock_->now();
    apply(log_.read(), started, told);
  }

  std::size_t size() const { return table_.size(); }

 private:
  // What a read found, under sync_mu_.
  void apply(const NearLog::Read& r, Clock::time_point started, HeldEvents& told) {
    report_.near_log_read();
    if (r.gap) {
      table_.drop_all();
      told.near_gap(log_.counter_key());
    }
    for (const auto& k : r.keys) {
      if (k == "*") {
        table_.drop_all();
      } else {
        table_.drop(k);
      }
    }
    if (r.ok) synced_.store(started.time_since_epoch().count(), std::memory_order_release);
  }

  // On demand: a read is due when the last began near_sync / 2 ago; one at a time.
  void read_if_due() {
    auto last = last_attempt_.load(std::memory_order_relaxed);
    auto now = clock_->now().time_since_epoch();
    if (last != never && now - Clock::time_point::duration(last) < sync_ / 2) return;
    if (reading_.exchange(true, std::memory_order_acq_rel)) return;
    due_();
  }

  bool current() const {
    auto at = synced_.load(std::memory_order_acquire);
    if (at == never) return false;
    auto since = clock_->now().time_since_epoch() - Clock::time_point::duration(at);
    return since < sync_;
  }

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    auto period = std::max<std::chrono::milliseconds>(sync_ / 2, std::chrono::milliseconds(1));
    while (!cv_.wait_for(lock, period, [&] { return stop_; })) {
      lock.unlock();
      sync_now();
      lock.lock();
    }
  }

  static constexpr Clock::time_point::rep never = INT64_MIN;

  std::chrono::milliseconds ttl_;
  std::chrono::milliseconds sync_;
  std::shared_ptr<Clock> clock_;
  const Reporter& report_;
  Table table_;
  NearLog log_;
  std::atomic<Clock::time_point::rep> synced_{never};
  std::function<void()> due_;  // on demand: starts a read
  std::atomic<Clock::time_point::rep> last_attempt_{never};
  std::atomic<bool> reading_{false};
  std::mutex sync_mu_;  // one log reader at a time
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cacheaside::detail
