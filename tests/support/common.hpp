// Helpers shared by the test files.
#pragma once

#include <atomic>
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/libmemcached.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "support/memcached_process.hpp"

namespace cacheaside_test {

using namespace std::chrono_literals;

using StringCache = cacheaside::CacheAside<std::string, std::string, cacheaside::StringSerializer>;

/// A memcached for this test plus a store on it.
struct Server {
  MemcachedProcess process;
  std::shared_ptr<cacheaside::MemcachedStore> store =
      std::make_shared<cacheaside::MemcachedStore>(process.config());
};

/// Milliseconds since start.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

}  // namespace cacheaside_test
