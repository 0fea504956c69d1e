// Time, TTL and randomness helpers (internal).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <thread>

#include "../store.hpp"

namespace cacheaside::detail {

using SteadyClock = std::chrono::steady_clock;

/// Unix time in milliseconds (wall clock: stored in values other processes
/// read).
inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Per-thread generator, seeded from random_device and the thread id.
inline std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    std::uint64_t seed = (std::uint64_t{rd()} << 32) ^ rd();
    seed ^= std::hash<std::thread::id>{}(std::this_thread::get_id());
    return seed;
  }());
  return gen;
}

/// Uniform in (0, 1]: safe to take the logarithm of.
inline double uniform_open0() {
  return (static_cast<double>(rng()() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

/// ttl scaled by a random factor in [1 - jitter, 1 + jitter].
inline std::chrono::milliseconds jittered(std::chrono::milliseconds ttl, double jitter) {
  if (jitter <= 0 || ttl.count() <= 0) return ttl;
  if (jitter > 1) jitter = 1;
  double f = 1.0 + jitter * (2.0 * uniform_open0() - 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ttl.count() * f)));
}

/// memcached expiry for a duration: whole seconds rounded up (at least 1); over
/// 30 days it must be an absolute unix time.
inline Exptime to_exptime(std::chrono::milliseconds d) {
  std::int64_t secs = (d.count() + 999) / 1000;
  if (secs < 1) secs = 1;
  constexpr std::int64_t thirty_days = 60 * 60 * 24 * 30;
  if (secs > thirty_days) secs += unix_ms() / 1000;
  if (secs > 0xFFFFFFFFll) secs = 0xFFFFFFFFll;
  return static_cast<Exptime>(secs);
}

/// A random token that marks one lease holder.
inline std::string lease_token() {
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t a = rng()(), b = rng()();
  std::string t(32, '0');
  for (int i = 0; i < 16; ++i) {
    t[i] = hex[(a >> (i * 4)) & 0xf];
    t[16 + i] = hex[(b >> (i * 4)) & 0xf];
  }
  return t;
}

}  // namespace cacheaside::detail
