// cacheaside: memcached expiry times (standard library only).
#pragma once

#include <chrono>
#include <cstdint>

namespace cacheaside {

/// Expiry as memcached takes it: seconds from now, or an absolute unix time
/// when longer than 30 days; 0 means "never".
using Exptime = std::uint32_t;

namespace detail {

// memcached reads an expiry above this as an absolute unix time.
inline constexpr std::int64_t thirty_days_s = 60 * 60 * 24 * 30;

/// The expiry for a duration: whole seconds rounded up (at least 1), absolute
/// past 30 days.
inline Exptime to_exptime(std::chrono::milliseconds d, std::int64_t unix_now_ms) {
  std::int64_t secs = (d.count() + 999) / 1000;
  if (secs < 1) secs = 1;
  if (secs > thirty_days_s) secs += unix_now_ms / 1000;
  if (secs > 0xFFFFFFFFll) secs = 0xFFFFFFFFll;
  return static_cast<Exptime>(secs);
}

/// When an item stored at unix_now_ms with exptime disappears, in unix ms; 0 =
/// never.
inline std::int64_t expiry_unix_ms(Exptime exptime, std::int64_t unix_now_ms) {
  if (exptime == 0) return 0;
  if (exptime > thirty_days_s) return std::int64_t{exptime} * 1000;
  return unix_now_ms + std::int64_t{exptime} * 1000;
}

}  // namespace detail
}  // namespace cacheaside
