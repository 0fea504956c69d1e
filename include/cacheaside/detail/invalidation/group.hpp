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

  /// What a driver does after one command of a generation read (current() for the
  /// blocking cache; the async cache sends the commands itself).
  enum class Next {
    use,     ///< `gen` is the generation (remembered)
    create,  ///< absent: add the counter at `gen`, then after_add()
    retry,   ///< another process created it meanwhile: get again
    fail,    ///< the store failed (`failed` says how)
  };

  /// The generation cached in this process, if still fresh (cache_for).
  std::optional<std::uint64_t> cached() {
    auto now = clock_->now();
    std::lock_guard<std::mutex> lock(mu_);
    if (valid_ && cache_for_.count() > 0 && now - read_at_ < cache_for_) return gen_;
    return std::nullopt;
  }

  /// After `get key()`: st and the value read.
  Next after_get(StoreStatus st, std::string_view value, std::uint64_t& gen, StoreStatus& failed) {
    if (st == StoreStatus::ok && parse_u64(value, gen)) {
      remember(gen, clock_->now());
      return Next::use;
    }
    if (st == StoreStatus::not_found) {
      // A fresh counter starts at the current time, so a counter that was
      // evicted never comes back to a generation that was used before.
      gen = static_cast<std::uint64_t>(clock_->unix_ms());
      return Next::create;
    }
    failed = st == StoreStatus::ok ? StoreStatus::error : st;  // ok: not a number
    return Next::fail;
  }

  /// After `add key() gen`.
  Next after_add(StoreStatus st, std::uint64_t gen, StoreStatus& failed) {
    if (st == StoreStatus::ok) {
      remember(gen, clock_->now());
      return Next::use;
    }
    if (st == StoreStatus::not_stored) return Next::retry;
    failed = st;
    return Next::fail;
  }

  /// How many gets a read tries before it gives up (others keep creating it).
  static constexpr int max_tries = 3;

  /// The current generation; nullopt when the store failed (`failed` says how).
  std::optional<std::uint64_t> current(StoreStatus& failed) {
    if (auto gen = cached()) return gen;
    std::uint64_t gen = 0;
    for (int attempt = 0; attempt < max_tries; ++attempt) {
      StoreItem item;
      StoreStatus st = store_->get(key_, item);  // before item.value is looked at
      Next next = after_get(st, item.value, gen, failed);
      if (next == Next::create) {
        st = store_->add(key_, std::to_string(gen), 0, 0);
        next = after_add(st, gen, failed);
      }
      if (next == Next::use) return gen;
      if (next == Next::fail) return std::nullopt;
    }
    failed = StoreStatus::error;
    return std::nullopt;
  }

  /// The value a bump starts a missing counter at.
  std::uint64_t bump_initial() const { return static_cast<std::uint64_t>(clock_->unix_ms()); }

  /// After a bump (`incr key() by 1 from bump_initial()`) that gave gen.
  void bumped(std::uint64_t gen) { remember(gen, clock_->now()); }

  /// Moves to a new generation.
  StoreStatus bump() {
    std::uint64_t gen = 0;
    StoreStatus st = store_->incr(key_, 1, bump_initial(), 0, gen);
    if (st == StoreStatus::ok) bumped(gen);
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
