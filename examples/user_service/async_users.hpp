// What the HTTP routes ask for, as coroutines on the I/O threads. Blocking work (SQLite,
// the classic-protocol cache) runs on a small thread pool, never on an I/O thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "request_trace.hpp"
#include "users.hpp"

namespace user_service {

template <class T>
using Task = boost::asio::awaitable<T>;

/// Runs fn() on `pool` and completes with (exception_ptr, result) on the caller's
/// executor: the caller's thread is free meanwhile.
template <class Fn, class Token>
auto async_on_pool(boost::asio::any_io_executor pool, Fn fn, Token&& token) {
  using T = std::invoke_result_t<Fn&>;
  return boost::asio::async_initiate<Token, void(std::exception_ptr, T)>(
      [pool](auto handler, Fn fn) {
        auto home = boost::asio::get_associated_executor(handler);
        auto work = boost::asio::make_work_guard(home);  // the io_context waits for us
        boost::asio::post(
            pool, [h = std::move(handler), fn = std::move(fn), work = std::move(work)]() mutable {
              std::exception_ptr error;
              T value{};
              try {
                value = fn();
              } catch (...) {
                error = std::current_exception();
              }
              auto ex = work.get_executor();
              boost::asio::dispatch(ex, [h = std::move(h), error, v = std::move(value)]() mutable {
                h(error, std::move(v));
              });
            });
      },
      token, std::move(fn));
}

/// The routes' view of users. `trace`, when given, hears what the cache does for
/// this request (the log line).
class AsyncUsers {
 public:
  virtual ~AsyncUsers() = default;
  /// The list as the HTTP body (GET /users/).
  virtual Task<std::string> list_body(RequestTrace* trace) = 0;
  virtual Task<std::optional<User>> find(long long id, RequestTrace* trace) = 0;
  virtual Task<User> create(std::string name, std::string email, RequestTrace* trace) = 0;
  virtual Task<std::optional<User>> update(long long id, std::string name, std::string email,
                                           RequestTrace* trace) = 0;
  virtual Task<bool> remove(long long id, RequestTrace* trace) = 0;
  /// As Users::apply_changes.
  virtual Task<std::vector<bool>> apply_changes(std::vector<long long> ids) = 0;
  /// True when the database answers.
  virtual Task<bool> database_ok() = 0;
  /// "ok", "down", or "disabled" (no cache).
  virtual Task<std::string> cache_health() = 0;
  /// Each cache's counters; none without a cache.
  virtual std::vector<CacheReport> cache_stats() = 0;
};

/// A blocking Users (the database alone, or the classic-protocol cache) run on a
/// thread pool.
class PooledUsers final : public AsyncUsers {
 public:
  PooledUsers(Users& users, boost::asio::any_io_executor pool)
      : users_(users), pool_(std::move(pool)) {}

  Task<std::string> list_body(RequestTrace* trace) override {
    return run({all_key()}, trace, [this] { return users_.list_body(); });
  }
  Task<std::optional<User>> find(long long id, RequestTrace* trace) override {
    return run({user_key(id)}, trace, [this, id] { return users_.find(id); });
  }
  Task<User> create(std::string name, std::string email, RequestTrace* trace) override {
    // The id is not known before: the list's key is enough for the trace.
    return run({all_key()}, trace, [this, name = std::move(name), email = std::move(email)] {
      return users_.create(name, email);
    });
  }
  Task<std::optional<User>> update(long long id, std::string name, std::string email,
                                   RequestTrace* trace) override {
    return run({user_key(id), all_key()}, trace,
               [this, id, name = std::move(name), email = std::move(email)] {
                 return users_.update(id, name, email);
               });
  }
  Task<bool> remove(long long id, RequestTrace* trace) override {
    return run({user_key(id), all_key()}, trace, [this, id] { return users_.remove(id); });
  }
  Task<std::vector<bool>> apply_changes(std::vector<long long> ids) override {
    return run({}, nullptr, [this, ids = std::move(ids)] { return users_.apply_changes(ids); });
  }
  Task<bool> database_ok() override {
    return run({}, nullptr, [this] { return users_.database_ok(); });
  }
  Task<std::string> cache_health() override {
    return run({}, nullptr, [this] { return users_.cache_health(); });
  }
  std::vector<CacheReport> cache_stats() override { return users_.cache_stats(); }

 private:
  template <class Fn>
  Task<std::invoke_result_t<Fn&>> run(std::vector<std::string> keys, RequestTrace* trace, Fn fn) {
    TraceScope scope(trace, std::move(keys));
    // By reference: g++ 12 mishandles the destruction of by-value captures in a
    // co_await's operand, and this frame outlives the call.
    co_return co_await async_on_pool(
        pool_, [&fn] { return fn(); }, boost::asio::use_awaitable);
  }

  Users& users_;
  boost::asio::any_io_executor pool_;
};

}  // namespace user_service
