// Which memcached store the suite runs over: CACHEASIDE_TEST_STORE=meta for
// MetaStore, anything else (or unset) for MemcachedStore. ctest runs the suite
// once with each.
#pragma once

#include <atomic>
#include <cacheaside/libmemcached.hpp>
#include <cacheaside/meta.hpp>
#include <cstdlib>
#include <memory>
#include <string>

namespace cacheaside_test {

/// How often a test asked which store to use (itself, or by starting a worker, which
/// asks in its own process): a test that never does runs once, tagged [nostore];
/// tests/main.cpp checks the tag against this.
inline std::atomic<long> store_choices{0};

inline bool meta_store() {
  store_choices.fetch_add(1, std::memory_order_relaxed);
  const char* s = std::getenv("CACHEASIDE_TEST_STORE");
  return s && std::string(s) == "meta";
}

inline std::shared_ptr<cacheaside::Store> make_store(const std::string& config) {
  if (meta_store()) return std::make_shared<cacheaside::MetaStore>(config);
  return std::make_shared<cacheaside::MemcachedStore>(config);
}

/// Callers waiting for one of the store's pooled connections now.
inline int pool_waiters(const cacheaside::Store& store) {
  if (auto* m = dynamic_cast<const cacheaside::MetaStore*>(&store)) return m->pool_waiters();
  if (auto* c = dynamic_cast<const cacheaside::MemcachedStore*>(&store)) return c->pool_waiters();
  return 0;
}

}  // namespace cacheaside_test
