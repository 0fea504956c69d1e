// The spool written off the caller's thread (internal): records queue, and a
// thread of its own writes all that is queued with one write and one fdatasync,
// then tells each waiter its record is on disk. A caller never waits for the disk
// unless it asks to (the blocking cache does; the asynchronous one is told).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "spool.hpp"

namespace cacheaside::detail {

class SpoolWriter {
 public:
  /// Called once the records asked about are on disk (ok) or could not be written.
  using Durable = std::function<void(bool ok)>;

  explicit SpoolWriter(std::unique_ptr<Spool> spool)
      : spool_(std::move(spool)), records_(spool_->records()) {}

  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  /// Writes what is queued, then closes the file (removed when empty).
  ~SpoolWriter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();  // it stops once the queue is written
    spool_->close_and_remove_if_empty();
  }

  /// Queues one record ("d" or "g" and a key).
  void append(char op, const std::string& key) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(Command{Kind::append, {{op, key}}});
      ++queued_;
      ++records_;
    }
    kick();
  }

  /// Queues emptying the file (nothing is pending).
  void clear() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (records_ == 0) return;
      queue_.push_back(Command{Kind::clear, {}});
      ++queued_;
      records_ = 0;
    }
    kick();
  }

  /// Queues replacing the file's content with exactly these records.
  void rewrite(std::vector<Spool::Record> records) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      records_ = records.size();
      queue_.push_back(Command{Kind::rewrite, std::move(records)});
      ++queued_;
    }
    kick();
  }

  /// Records in the file once the queue is written (for compaction).
  std::size_t records() const {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

  /// d(ok) once everything queued so far is on disk: at once, in this thread,
  /// when nothing waits to be written; else from the writer's thread.
  void when_durable(Durable d) {
    bool ok = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queued_ > written_) {
        waiters_.push_back(Waiter{queued_, std::move(d)});
        return;
      }
      ok = last_ok_;
    }
    d(ok);
  }

  /// Blocks until everything queued so far is on disk; false if a write failed.
  bool wait_durable() {
    std::unique_lock<std::mutex> lock(mu_);
    std::uint64_t want = queued_;
    cv_.wait(lock, [&] { return written_ >= want; });
    return last_ok_;
  }

 private:
  enum class Kind { append, clear, rewrite };
  struct Command {
    Kind kind;
    std::vector<Spool::Record> records;
  };
  struct Waiter {
    std::uint64_t upto;
    Durable done;
  };

  // The writer's thread takes the queue; without one (none to be had), the
  // caller writes it.
  void kick() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!thread_.joinable()) {
        try {
          thread_ = std::thread([this] { run(); });
        } catch (const std::system_error&) {
        }
      }
      if (thread_.joinable()) return cv_.notify_all();
    }
    drain();
  }

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, all written
      lock.unlock();
      drain();
      lock.lock();
    }
  }

  // Writes everything queued now: the appends in a row with one write and one
  // fdatasync, then tells whoever waited for them.
  void drain() {
    std::vector<Command> batch;
    std::lock_guard<std::mutex> one(drain_mu_);  // batches in queue order
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(queue_);
    }
    if (batch.empty()) return;
    bool ok = true;
    std::vector<Spool::Record> lines;
    auto flush = [&] {
      if (lines.empty()) return;
      ok = spool_->append_all(lines) && ok;
      lines.clear();
    };
    for (Command& c : batch) {
      if (c.kind == Kind::append) {
        lines.insert(lines.end(), c.records.begin(), c.records.end());
        continue;
      }
      flush();
      if (c.kind == Kind::clear) {
        spool_->clear();
      } else {
        ok = spool_->rewrite(c.records) && ok;
      }
    }
    flush();
    std::vector<Waiter> told;
    {
      std::lock_guard<std::mutex> lock(mu_);
      written_ += batch.size();
      last_ok_ = ok;
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->upto > written_) {
          ++it;
          continue;
        }
        told.push_back(std::move(*it));
        it = waiters_.erase(it);
      }
    }
    cv_.notify_all();
    for (Waiter& w : told) w.done(ok);
  }

  std::unique_ptr<Spool> spool_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> queue_;
  std::vector<Waiter> waiters_;
  std::uint64_t queued_ = 0;   // commands given, ever
  std::uint64_t written_ = 0;  // of those, carried out (or failed)
  std::size_t records_ = 0;    // in the file once the queue is written
  bool last_ok_ = true;        // the last batch was written
  bool stop_ = false;
  std::mutex drain_mu_;
  std::thread thread_;
};

}  // namespace cacheaside::detail
