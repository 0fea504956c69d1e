// cacheaside: error types. Cache failures are absorbed and counted, never
// thrown; these are for configuration mistakes and loader timeouts.
#pragma once

#include <stdexcept>
#include <string>

namespace cacheaside {

/// Base of every exception cacheaside throws itself (bad configuration, bad
/// arguments).
class Error : public std::runtime_error {
 public:
  /// what: the message, naming the option or argument at fault.
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Thrown by `get` when the loader ran past `Options::hard_timeout` and no
/// stale copy could be served. The load keeps running in the background and
/// still fills the cache.
class TimeoutError : public Error {
 public:
  /// what: the message, with the key and the timeout.
  explicit TimeoutError(const std::string& what) : Error(what) {}
};

}  // namespace cacheaside
