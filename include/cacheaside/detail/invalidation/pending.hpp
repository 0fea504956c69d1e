// Invalidations the store did not confirm, kept and retried until it does
// (internal).
//
// While a key is pending, reads of it in this process go to the loader and
// store nothing (`holds`): memcached may still have the old value. A pending
// group bump holds out every key. The table is bounded; past the bound a
// cache with a group turns everything into one pending group bump, one
// without drops the newest key (counted, with an event: never silently).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../store.hpp"
#include "../random.hpp"
#include "../reporter.hpp"
#include "spool.hpp"
#include "spool_writer.hpp"

namespace cacheaside::detail {

class PendingInvalidations {
 public:
  enum class Op : char { remove = 'd', bump = 'g' };
  using Time = std::chrono::steady_clock::time_point;
  /// Applies one invalidation to the store.
  using Apply = std::function<StoreStatus(Op, const std::string& key)>;
  /// Told (under a lock: it must not call back) that a retry round is due by a
  /// time: an owner that runs the rounds itself (the async cache's timer).
  using Wake = std::function<void(Time)>;

  struct Settings {
    std::chrono::milliseconds retry{250};  // longest wait between two rounds
    std::size_t max_keys = 10000;
    std::string spool;      // empty: none
    std::string group_key;  // empty: no group
    Wake wake;              // empty: rounds run on a thread of this table's own
  };

  /// One invalidation a round retries.
  struct Task {
    Op op;
    std::string key;
    std::uint64_t seq;
  };

  PendingInvalidations(Settings s, Apply apply, const Reporter& report)
      : set_(std::move(s)), apply_(std::move(apply)), report_(report) {
    if (set_.retry.count() <= 0) throw Error("cacheaside: invalidation_retry must be positive");
    if (set_.max_keys == 0) throw Error("cacheaside: max_pending_invalidations must be positive");
    if (set_.spool.empty()) return;
    auto file = std::make_unique<Spool>(set_.spool);
    auto records = file->read_all();
    if (records.empty()) file->clear();  // a torn line alone
    spool_ = std::make_unique<SpoolWriter>(std::move(file));
    if (records.empty()) return;
    HeldEvents told(report_);  // told after the lock: a hook may call the cache
    std::unique_lock<std::mutex> lock(mu_);
    for (const auto& r : records) {
      if (r.op == 'g' && r.key == set_.group_key) {
        note_bump();
      } else {
        // A counter of another group: deleting it moves it on as well (a new
        // counter starts at the current time).
        keys_[r.key] = Entry{++seq_, std::chrono::steady_clock::now()};
      }
      told.invalidation_pending(r.key, "replayed from the spool");
    }
    publish_count();
    lock.unlock();
    told.tell();  // before the retries start: "pending" is told before "applied"
    lock.lock();
    start_locked(std::chrono::steady_clock::now());
  }

  PendingInvalidations(const PendingInvalidations&) = delete;
  PendingInvalidations& operator=(const PendingInvalidations&) = delete;

  /// Stops the retries after one last round (unless an owner runs the rounds:
  /// its last one is over). What is still pending stays in the spool for the
  /// next owner (written before this returns), or is dropped (counted) without one.
  ~PendingInvalidations() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (count_.load() > 0 && !set_.wake) round();
    HeldEvents told(report_);
    std::lock_guard<std::mutex> lock(mu_);
    if (!spool_) {
      for (const auto& [key, e] : keys_) drop(key, "destroyed while pending", told);
      if (group_) drop(set_.group_key, "destroyed while pending", told);
    } else if (count_.load() == 0) {
      spool_->clear();  // then the writer removes the empty file
    }
  }

  /// True when reads of mkey must bypass the cache. One atomic load when
  /// nothing is pending.
  bool holds(const std::string& mkey) const {
    if (count_.load(std::memory_order_acquire) == 0) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return group_ || keys_.count(mkey) != 0;
  }

  /// Keys (and group bumps) pending now.
  std::size_t size() const { return count_.load(std::memory_order_relaxed); }

  /// Records an invalidation the store did not confirm (`why`: its answer, `what`:
  /// the operation), queues it for the spool (when_durable tells when it is on
  /// disk) and schedules its retry. Never waits for the disk.
  void add(Op op, const std::string& key, StoreStatus why, const char* what) {
    std::string reason = std::string(what) + ": " + to_string(why);
    HeldEvents told(report_);  // told after the lock: a hook may call the cache
    std::lock_guard<std::mutex> lock(mu_);
    if (op == Op::bump) {
      note_bump();
    } else if (group_) {
      // The pending group bump covers this key too, if it is applied after now: a
      // bump in flight may have landed before this key's generation was read.
      note_bump();
      op = Op::bump;
      reason += "; covered by the pending group bump";
    } else if (keys_.size() >= set_.max_keys && keys_.count(key) == 0) {
      report_.invalidation_overflowed();
      if (set_.group_key.empty()) return drop(key, "pending table full", told);
      // One bump of the group invalidates every key this cache has.
      keys_.clear();
      note_bump();
      told.invalidation_pending_told(set_.group_key, "pending table full: group bump");
      op = Op::bump;
    } else {
      auto it = keys_.find(key);
      if (it == keys_.end()) {
        keys_.emplace(key, Entry{++seq_, std::chrono::steady_clock::now()});
      } else {
        it->second.seq = ++seq_;  // a retry in flight must not erase this one
      }
    }
    const std::string& recorded = op == Op::bump ? set_.group_key : key;
    if (spool_) spool_->append(static_cast<char>(op), recorded);
    told.invalidation_pending(recorded, reason);
    publish_count();
    compact_locked();
    start_locked(std::chrono::steady_clock::now() + first_delay());
  }

  /// d(ok) once every record added so far is on disk (at once, in this thread,
  /// without a spool or with nothing left to write; else from the spool's
  /// writer thread). ok: written, or no spool.
  void when_durable(SpoolWriter::Durable d) {
    if (!spool_) return d(true);
    spool_->when_durable(std::move(d));
  }

  /// Blocks until every record added so far is on disk (the blocking cache's
  /// callers return once theirs is); false when the spool could not be written.
  bool wait_durable() { return !spool_ || spool_->wait_durable(); }

  /// Taken before a store call whose success may confirm pending records: that
  /// success covers only the records older than the ticket.
  std::uint64_t ticket() const { return seq_.load(std::memory_order_acquire); }

  /// An invalidation or write of key, whose store call began at ticket t,
  /// succeeded: a failure of key recorded before t needs no retry.
  void confirmed(const std::string& key, std::uint64_t t) {
    if (count_.load(std::memory_order_acquire) == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(key);
    if (it == keys_.end() || it->second.seq > t) return;  // failed again since t
    keys_.erase(it);
    publish_count();
  }

  /// A group bump that began at ticket t succeeded: every key recorded before t
  /// moved on with it.
  void confirmed_all(std::uint64_t t) {
    if (count_.load(std::memory_order_acquire) == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    erase_up_to(t);
    publish_count();
  }

  /// One retry round in the caller's thread (the background runs them anyway);
  /// returns what is still pending.
  std::size_t retry_now() {
    round();
    wait_durable();  // the spool says what the table does when this returns
    return size();
  }

  // A round run by an owner (Settings::wake), one at a time: its tasks, then
  // settle() for each in turn until one is not applied, then round_ended().

  /// Everything pending, in rotating order.
  std::vector<Task> round_tasks() {
    std::vector<Task> tasks;
    std::lock_guard<std::mutex> lock(mu_);
    if (group_) tasks.push_back({Op::bump, set_.group_key, group_seq_});
    for (const auto& kv : keys_) tasks.push_back({Op::remove, kv.first, kv.second.seq});
    if (tasks.size() > 1) {
      auto first = tasks.begin() + (group_ ? 1 : 0);
      auto n = static_cast<std::size_t>(tasks.end() - first);
      if (n > 0)
        std::rotate(first, first + static_cast<std::ptrdiff_t>(rotation_++ % n), tasks.end());
    }
    return tasks;
  }

  /// t was retried and the store said st: true when that applied it (the round
  /// goes on); false when it failed (the store is still away: the round stops
  /// rather than wait one timeout per key).
  bool settle(const Task& t, StoreStatus st) {
    report_.invalidation_retried();
    bool done = st == StoreStatus::ok || (t.op == Op::remove && st == StoreStatus::not_found);
    if (!done) return false;
    HeldEvents told(report_);  // told after the lock: a hook may call the cache
    std::lock_guard<std::mutex> lock(mu_);
    Time since;
    if (t.op == Op::bump) {
      if (!group_ || group_seq_ != t.seq) return true;  // failed again meanwhile
      since = group_since_;
      erase_up_to(t.seq);  // the bump moved every key recorded before it on
    } else {
      auto it = keys_.find(t.key);
      if (it == keys_.end() || it->second.seq != t.seq) return true;
      since = it->second.since;
      keys_.erase(it);
    }
    told.invalidation_applied(t.key, std::chrono::steady_clock::now() - since);
    publish_count();
    return true;
  }

  /// The round is over (progressed: something was applied): when the next one
  /// is due, with backoff and jitter; nullopt when nothing is pending.
  std::optional<Time> round_ended(bool progressed) {
    std::lock_guard<std::mutex> lock(mu_);
    if (spool_ && count_.load() == 0) spool_->clear();
    schedule_next_locked(progressed);
    if (!scheduled_) return std::nullopt;
    return next_;
  }

 private:
  struct Entry {
    std::uint64_t seq;
    Time since;
  };

  std::chrono::milliseconds first_delay() const {
    return std::max(set_.retry / 8, std::chrono::milliseconds(1));
  }

  void note_bump() {
    if (!group_) group_since_ = std::chrono::steady_clock::now();
    group_ = true;
    group_seq_ = ++seq_;
  }

  // Forgets the group bump and the keys recorded at or before ticket t.
  void erase_up_to(std::uint64_t t) {
    if (group_ && group_seq_ <= t) group_ = false;
    for (auto it = keys_.begin(); it != keys_.end();) {
      it = it->second.seq <= t ? keys_.erase(it) : std::next(it);
    }
  }

  void publish_count() { count_.store(keys_.size() + (group_ ? 1 : 0), std::memory_order_release); }

  void drop(const std::string& key, const char* why, HeldEvents& told) {
    told.invalidation_dropped(key, why);
  }

  // The spool holds every record since it was last emptied: rewrite it when it
  // is mostly records of keys no longer pending.
  void compact_locked() {
    if (!spool_ || spool_->records() <= 2 * (keys_.size() + 1) + 64) return;
    std::vector<Spool::Record> now;
    if (group_) now.push_back({'g', set_.group_key});
    for (const auto& kv : keys_) now.push_back({'d', kv.first});
    spool_->rewrite(now);
  }

  // Starts the background thread (or tells the owner), or moves its next round
  // no later than at.
  void start_locked(Time at) {
    if (stop_) return;
    bool sooner = !scheduled_ || at < next_;
    if (sooner) next_ = at;
    scheduled_ = true;
    if (set_.wake) {
      if (sooner) set_.wake(at);
      return;
    }
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([this] { run(); });
      } catch (const std::system_error&) {
        return;  // no thread to be had: the next add or retry_now tries again
      }
    }
    cv_.notify_all();
  }

  // The next round after one that did (not) progress: backoff up to the retry
  // setting, from the first delay again once nothing is pending.
  void schedule_next_locked(bool progressed) {
    if (count_.load() == 0) {
      scheduled_ = false;
      delay_ = first_delay();
      return;
    }
    if (!progressed) delay_ = std::min(delay_ * 2, set_.retry);
    // Jitter: processes partitioned together do not retry in lockstep.
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        delay_ * (0.75 + 0.25 * uniform_open0()));
    next_ = std::chrono::steady_clock::now() + std::max(wait, std::chrono::milliseconds(1));
    scheduled_ = true;
  }

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (!scheduled_) {
        cv_.wait(lock, [&] { return stop_ || scheduled_; });
        continue;
      }
      auto target = next_;
      cv_.wait_until(lock, target, [&] { return stop_ || next_ != target; });
      if (stop_) break;
      if (std::chrono::steady_clock::now() < next_) continue;  // moved earlier
      lock.unlock();
      round();
      lock.lock();
    }
  }

  // One round in this thread, each task applied here.
  void round() {
    std::lock_guard<std::mutex> one_round(round_mu_);
    bool progressed = false;
    for (const Task& t : round_tasks()) {
      if (!settle(t, apply_(t.op, t.key))) break;
      progressed = true;
    }
    round_ended(progressed);
  }

  Settings set_;
  Apply apply_;
  const Reporter& report_;
  std::unique_ptr<SpoolWriter> spool_;  // null: no spool

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, Entry> keys_;
  bool group_ = false;
  std::uint64_t group_seq_ = 0;
  Time group_since_;
  std::atomic<std::uint64_t> seq_{0};  // changed under mu_; ticket() reads it without
  std::atomic<std::size_t> count_{0};
  std::size_t rotation_ = 0;
  bool scheduled_ = false;
  bool stop_ = false;
  Time next_;
  std::chrono::milliseconds delay_ = first_delay();  // between rounds that fail
  std::thread thread_;
  std::mutex round_mu_;  // one round at a time
};

}  // namespace cacheaside::detail
