// cacheaside: AsyncInvalidationFanout<Change>, InvalidationFanout over the
// asynchronous caches.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "async_cache_aside.hpp"
#include "detail/async/caller.hpp"
#include "detail/invalidation/fanout_plan.hpp"

namespace cacheaside {

/// As InvalidationFanout, for AsyncCacheAside: every distinct key of a batch is
/// invalidated at once, so the batch costs the round trips of one invalidation
/// on each server, whatever its size.
///
///   cacheaside::AsyncInvalidationFanout<long long> on_user(by_id, [](long long id) { return id;
///   }); on_user.add(lists, [](long long) { return std::string("users_all"); }); std::vector<bool>
///   done = co_await on_user.async_apply({5, 7}, asio::use_awaitable);
///
/// Thread-safe once built; the caches must outlive it and its operations.
template <class Change>
class AsyncInvalidationFanout {
 public:
  /// add(cache, keys_of) at once; completions without an executor of their own
  /// run on cache's.
  template <class K, class V, class S, class KeysOf>
  AsyncInvalidationFanout(AsyncCacheAside<K, V, S>& cache, KeysOf keys_of)
      : ex_(cache.get_executor()) {
    add(cache, std::move(keys_of));
  }

  /// See InvalidationFanout::add.
  template <class K, class V, class S, class KeysOf>
  AsyncInvalidationFanout& add(AsyncCacheAside<K, V, S>& cache, KeysOf keys_of) {
    near_targets_.push_back([&cache, keys_of](const std::vector<Change>& changes) {
      for (const K& k : detail::plan_fanout<K>(changes, keys_of).keys) cache.drop_near(k);
    });
    targets_.push_back([&cache, keys_of = std::move(keys_of)](const std::vector<Change>& changes,
                                                              const std::shared_ptr<Join>& join) {
      auto plan = std::make_shared<detail::FanoutPlan<K>>(detail::plan_fanout<K>(changes, keys_of));
      for (std::size_t i = 0; i < plan->keys.size(); ++i) {
        join->begin();
        cache.async_invalidate(plan->keys[i], [join, plan, i](std::exception_ptr e, bool ok) {
          join->end(plan->changes[i], std::move(e), ok);
        });
      }
    });
    return *this;
  }

  /// Drops the near copies of every key the changes map to, in this process, at
  /// once and without I/O (async_apply does the work in memcached): for changes
  /// heard of first through a database's notification.
  void drop_near(const std::vector<Change>& changes) const {
    for (const auto& t : near_targets_) t(changes);
  }

  /// As InvalidationFanout::apply; completes with `void(std::exception_ptr,
  /// std::vector<bool>)`, the error being the first a cache gave (its keys then
  /// count as unconfirmed).
  template <class Token = asio::deferred_t>
  auto async_apply(std::vector<Change> changes, Token&& token = {}) const {
    return asio::async_initiate<Token, void(std::exception_ptr, std::vector<bool>)>(
        [this](auto handler, std::vector<Change> changes) {
          using Caller = detail::AsyncCaller<decltype(handler), std::vector<bool>>;
          auto caller = std::make_shared<Caller>(std::move(handler), ex_);
          auto join = std::make_shared<Join>(changes.size(), [caller](Join& j) {
            caller->complete(std::move(j.error), std::move(j.confirmed));
          });
          for (const auto& t : targets_) t(changes, join);
          join->end({}, nullptr, true);  // the one begun by the constructor
          caller->initiated();
        },
        token, std::move(changes));
  }

 private:
  // The invalidations of one batch: completes the caller after the last.
  struct Join {
    Join(std::size_t n, std::function<void(Join&)> done)
        : confirmed(n, true), done_(std::move(done)) {}
    void begin() {
      std::lock_guard<std::mutex> lock(mu_);
      ++left_;
    }
    void end(const std::vector<std::size_t>& changes, std::exception_ptr e, bool ok) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!ok || e)
          for (std::size_t c : changes) confirmed[c] = false;
        if (e && !error) error = std::move(e);
        if (--left_ != 0) return;
      }
      done_(*this);
    }
    std::vector<bool> confirmed;
    std::exception_ptr error;

   private:
    std::mutex mu_;
    std::size_t left_ = 1;
    std::function<void(Join&)> done_;
  };

  asio::any_io_executor ex_;
  std::vector<std::function<void(const std::vector<Change>&, const std::shared_ptr<Join>&)>>
      targets_;
  std::vector<std::function<void(const std::vector<Change>&)>> near_targets_;
};

}  // namespace cacheaside
