// A group's generation: a counter in memcached folded into every key of the
// group, so one increment invalidates them all (internal).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../../clock.hpp"
#include "../../store.hpp"

namespace cacheaside::detail {

class GroupGeneration {
 public:
  /// key: the counter's memcached key (empty: no group). cache_for: how long a
  /// read generation is reused in this process (0: read every time).
  GroupGeneration(std::shared_ptr<Store> store, std::string key,
                  std::chrono::milliseconds cache_for, std::shared_ptr<Clock> clock)
      : store_(std::move(store)),
        key_(std::move(key)),
        cache_for_(cache_for),
        clock_(std::move(clock)) {}

  bool enabled() const { return !key_.empty(); }
  const std::string& key() const { return key_; }

  /// The current generation; nullopt when the store failed (`failed` says how).
  std::optional<std::uint64_t> current(StoreStatus& failed) {
    auto now = clock_->now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (valid_ && cache_for_.count() > 0 && now - read_at_ < cache_for_) return gen_;
    }
    std::uint64_t gen = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      StoreItem item;
      StoreStatus st = store_->get(key_, item);
      if (st == StoreStatus::ok && parse_u64(item.value, gen)) return remember(gen, now);
      if (st == StoreStatus::not_found) {
        // A fresh counter starts at the current time, so a counter that was
        // evicted never comes back to a generation that was used before.
        gen = static_cast<std::uint64_t>(clock_->unix_ms());
        st = store_->add(key_, std::to_string(gen), 0, 0);
        if (st == StoreStatus::ok) return remember(gen, now);
        if (st == StoreStatus::not_stored) continue;  // another process created it
      }
      failed = st == StoreStatus::ok ? StoreStatus::error : st;  // ok: not a number
      return std::nullopt;
    }
    failed = StoreStatus::error;
    return std::nullopt;
  }

  /// Moves to a new generation.
  StoreStatus bump() {
    std::uint64_t gen = 0;
    StoreStatus st = store_->incr(key_, 1, static_cast<std::uint64_t>(clock_->unix_ms()), 0, gen);
    if (st == StoreStatus::ok) remember(gen, clock_->now());
    return st;
  }

 private:
  std::uint64_t remember(std::uint64_t gen, Clock::time_point at) {
    std::lock_guard<std::mutex> lock(mu_);
    gen_ = gen;
    read_at_ = at;
    valid_ = true;
    return gen;
  }

  static bool parse_u64(std::string_view s, std::uint64_t& v) {
    if (s.empty() || s.size() > 20) return false;
    v = 0;
    for (char c : s) {
      if (c == ' ' || c == '\r' || c == '\n') break;  // incr may pad with spaces
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
  }

  std::shared_ptr<Store> store_;
  std::string key_;
  std::chrono::milliseconds cache_for_;
  std::shared_ptr<Clock> clock_;
  std::mutex mu_;
  std::uint64_t gen_ = 0;
  Clock::time_point read_at_{};
  bool valid_ = false;
};

}  // namespace cacheaside::detail
