// The caches the tests make: each one, when it goes, must leave nothing in flight
// and nothing pending, unless its test is tagged [unfinished] (a store left
// unreachable, a load left running). A breach is told to the listener in
// main.cpp, which fails the test: a cache may go on any thread.
#pragma once

#include <atomic>
#include <cacheaside/cache_aside.hpp>
#include <cstdio>
#include <mutex>
#include <string>

namespace cacheaside_test {

struct LeftoverCheck {
  std::atomic<bool> enforced{true};  // off for a test tagged [unfinished]
  std::mutex mu;
  std::string breach;  // the first one in this test
};

inline LeftoverCheck& leftover_check() {
  static LeftoverCheck c;
  return c;
}

template <class Key, class Value, class Serializer>
class TestCache : public cacheaside::CacheAside<Key, Value, Serializer> {
 public:
  using cacheaside::CacheAside<Key, Value, Serializer>::CacheAside;

  TestCache(const TestCache&) = delete;
  TestCache& operator=(const TestCache&) = delete;

  ~TestCache() {
    LeftoverCheck& c = leftover_check();
    if (!c.enforced) return;
    cacheaside::Usage u = this->usage();
    if (u.flights == 0 && u.pending == 0) return;
    char why[160];
    std::snprintf(why, sizeof why,
                  "a cache '%s' went with %zu loads in flight and %zu pending "
                  "invalidations",
                  this->options().name.c_str(), u.flights, u.pending);
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.breach.empty()) c.breach = why;
  }
};

}  // namespace cacheaside_test
