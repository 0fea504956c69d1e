// How the service's caches are set up, shared by both drivers (the definition of
// cache_options is in cached_users.cpp).
#pragma once

#include <cacheaside/options.hpp>
#include <chrono>
#include <string>
#include <vector>

namespace user_service {

/// How the service's caches are set up (from its flags).
struct CacheSettings {
  /// Where each cache keeps its pending invalidations across a crash (prefix + name +
  /// ".spool"); empty: in memory only.
  std::string spool_prefix;
  /// The near cache's bound between instances; 0: no near cache.
  std::chrono::milliseconds near_sync{0};
  /// Signed values when not empty (--signing-keys).
  std::vector<cacheaside::SigningKey> signing_keys;
};

/// The options of the caches "user" (prefix user_, 120 s) and "users" (60 s), as the
/// settings say, with events to the request log.
cacheaside::Options cache_options(const char* name, const char* prefix, int ttl_seconds,
                                  const CacheSettings& settings);

}  // namespace user_service
