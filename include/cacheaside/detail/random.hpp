// Randomness: TTL jitter, XFetch draws, lease tokens (internal).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <thread>

namespace cacheaside::detail {

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
