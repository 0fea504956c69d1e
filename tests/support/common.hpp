// Helpers shared by the test files.
#pragma once

#include <atomic>
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/libmemcached.hpp>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "support/checked_cache.hpp"
#include "support/memcached_process.hpp"
#include "support/store_choice.hpp"

namespace cacheaside_test {

using namespace std::chrono_literals;

using StringCache = TestCache<std::string, std::string, cacheaside::StringSerializer>;

/// A memcached for this test plus a store on it.
struct Server {
  MemcachedProcess process;
  std::shared_ptr<cacheaside::Store> store = make_store(process.config());
};

/// A manual clock and an in-memory store that reads it: timing tests without
/// sleeping.
struct ManualWorld {
  std::shared_ptr<cacheaside::ManualClock> clock = std::make_shared<cacheaside::ManualClock>();
  std::shared_ptr<cacheaside::InMemoryStore> store =
      std::make_shared<cacheaside::InMemoryStore>(1024 * 1024, clock);
  /// Options on this clock, without jitter.
  cacheaside::Options options() const {
    cacheaside::Options o;
    o.clock = clock;
    o.ttl_jitter = 0;
    return o;
  }
};

/// A source of truth for string caches: rows by key, and how often it was read.
struct Database {
  std::map<std::string, std::string> db;
  std::atomic<int> loads{0};
  /// A loader over db (a missing key: nullopt).
  StringCache::Loader loader() {
    return [this](const std::string& k) -> std::optional<std::string> {
      ++loads;
      auto it = db.find(k);
      if (it == db.end()) return std::nullopt;
      return it->second;
    };
  }
};

/// Polls cond every millisecond, up to 10 s; true once it holds.
template <class Cond>
bool eventually(Cond cond) {
  for (int i = 0; i < 10000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

/// The environment variable `name` as a number; fallback when unset or empty.
inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

/// Milliseconds since start.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

}  // namespace cacheaside_test
