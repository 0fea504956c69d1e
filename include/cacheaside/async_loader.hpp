// cacheaside: the loaders of AsyncCacheAside, and blocking_loader, which runs a
// blocking one on an executor of its own (component async).
#pragma once

#include <boost/asio/post.hpp>
#include <exception>
#include <functional>
#include <optional>
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

}  // namespace cacheaside
