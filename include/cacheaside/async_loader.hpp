// cacheaside: the loaders of AsyncCacheAside: callbacks, blocking_loader (a
// blocking function on an executor of its own), initiating_loader (an Asio
// initiating function) and, for C++20, awaitable_loader (a coroutine). Component
// async.
#pragma once

#include <boost/asio/async_result.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#include <boost/asio/co_spawn.hpp>
#endif

#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace cacheaside {

/// Completes one load: the loader's exception, or the value (nullopt: the key
/// does not exist). Call it exactly once, from any thread.
template <class Value>
using LoadHandler = std::function<void(std::exception_ptr, std::optional<Value>)>;

/// Loads one value without blocking the caller's thread: starts the load and
/// returns; the handler is called when it ends.
template <class Key, class Value>
using AsyncLoader = std::function<void(const Key&, LoadHandler<Value>)>;

/// Completes one bulk load: the values aligned with the keys given.
template <class Value>
using BulkLoadHandler = std::function<void(std::exception_ptr, std::vector<std::optional<Value>>)>;

/// Loads several values at once without blocking the caller's thread.
template <class Key, class Value>
using AsyncBulkLoader = std::function<void(const std::vector<Key>&, BulkLoadHandler<Value>)>;

/// An async loader that runs the blocking `fn(key) -> std::optional<Value>` on
/// `ex` (a thread pool's executor: never the io_context's, whose thread it
/// would block). What fn throws goes to the handler.
template <class Executor, class Fn>
auto blocking_loader(Executor ex, Fn fn) {
  return [ex, fn = std::move(fn)](const auto& key, auto handler) -> void {
    boost::asio::post(ex, [fn, key, h = std::move(handler)]() mutable {
      std::exception_ptr error;
      decltype(fn(key)) v;
      try {
        v = fn(key);
      } catch (...) {
        error = std::current_exception();
      }
      h(std::move(error), std::move(v));
    });
  };
}

/// blocking_loader for a bulk loader `fn(keys) -> std::vector<std::optional<Value>>`.
template <class Executor, class Fn>
auto blocking_bulk_loader(Executor ex, Fn fn) {
  return blocking_loader(std::move(ex), std::move(fn));
}

namespace detail {

// Completes a load handler from an Asio completion of `(std::exception_ptr, R)`
// or `(boost::system::error_code, R)`: an error code becomes a system_error.
template <class Handler>
struct LoadCompletion {
  Handler h;
  template <class R>
  void operator()(std::exception_ptr e, R r) {
    h(std::move(e), std::move(r));
  }
  template <class R>
  void operator()(boost::system::error_code ec, R r) {
    if (ec) return h(std::make_exception_ptr(boost::system::system_error(ec)), R());
    h(nullptr, std::move(r));
  }
};

}  // namespace detail

/// An async loader from an Asio initiating function `fn(key, token)` (bulk:
/// `fn(keys, token)`) that completes with `(std::exception_ptr, R)` or
/// `(boost::system::error_code, R)`, R the loader's result. An error code
/// reaches the caller as a `boost::system::system_error`.
template <class Fn>
auto initiating_loader(Fn fn) {
  return [fn = std::move(fn)](const auto& key, auto handler) -> void {
    fn(key, detail::LoadCompletion<decltype(handler)>{std::move(handler)});
  };
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
/// A loader made from a coroutine; the cache binds it to its store's executor
/// (see awaitable_loader).
template <class Fn>
struct AwaitableLoader {
  Fn fn;
  /// The async loader that runs fn on ex.
  template <class Executor>
  auto bind(Executor ex) const {
    return [fn = fn, ex](const auto& key, auto handler) -> void {
      using K = std::decay_t<decltype(key)>;
      // The key is the coroutine's own copy: fn may take it by reference.
      boost::asio::co_spawn(
          ex, [fn, k = K(key)]() { return fn(k); },
          [h = std::move(handler)](std::exception_ptr e, auto v) mutable {
            h(std::move(e), std::move(v));
          });
    };
  }
};

/// C++20: an async loader from a coroutine `fn(key) ->
/// asio::awaitable<std::optional<Value>>`, run on the cache's executor. What it
/// throws reaches every caller sharing the load.
template <class Fn>
AwaitableLoader<Fn> awaitable_loader(Fn fn) {
  return {std::move(fn)};
}

/// C++20: awaitable_loader for a bulk loader `fn(keys) ->
/// asio::awaitable<std::vector<std::optional<Value>>>`.
template <class Fn>
AwaitableLoader<Fn> awaitable_bulk_loader(Fn fn) {
  return {std::move(fn)};
}
#endif

namespace detail {

// A loader the cache binds to its executor first (awaitable_loader).
template <class L, class Executor, class = void>
struct binds_executor : std::false_type {};
template <class L, class Executor>
struct binds_executor<
    L, Executor, std::void_t<decltype(std::declval<const L&>().bind(std::declval<Executor>()))>>
    : std::true_type {};

// The loader itself, or what it becomes bound to ex.
template <class L, class Executor>
auto bound_loader(L&& l, const Executor& ex) {
  if constexpr (binds_executor<std::decay_t<L>, Executor>::value) {
    return l.bind(ex);
  } else {
    return std::forward<L>(l);
  }
}

}  // namespace detail

}  // namespace cacheaside
