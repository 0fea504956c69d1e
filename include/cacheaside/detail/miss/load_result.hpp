// What a loader call did, recorded on the keys it loaded (internal): one copy
// for the blocking driver and the asynchronous one.
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../error.hpp"
#include "../reporter.hpp"
#include "miss.hpp"

namespace cacheaside::detail {

/// The message of an exception (a loader's, for its event; a relay's source's).
inline std::string exception_text(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// One loader call for m ended after d, with v or error.
template <class M, class V>
void take_load(M& m, std::optional<V> v, std::exception_ptr error, Duration d,
               const Reporter& report) {
  if (error) {
    report.load_failed(m.mkey, d, exception_text(error));
    m.error = std::move(error);
    return;
  }
  report.load_ended(m.mkey, d);
  m.loaded = std::move(v);
  m.load_us = load_micros(d);
}

/// One bulk loader call for ms ended after d, with loaded (aligned with ms) or
/// error. A result of the wrong size is the loader's error.
template <class M, class V>
void take_bulk_load(std::vector<M*>& ms, std::vector<std::optional<V>> loaded,
                    std::exception_ptr error, Duration d, const Reporter& report) {
  if (!error && loaded.size() != ms.size())
    error = std::make_exception_ptr(Error("cacheaside: bulk loader returned " +
                                          std::to_string(loaded.size()) + " values for " +
                                          std::to_string(ms.size()) + " keys"));
  for (std::size_t i = 0; i < ms.size(); ++i) {
    M& m = *ms[i];
    m.load_us = load_micros(d);
    if (error) {
      report.load_failed(m.mkey, d, "bulk loader failed");  // per key, like loads
      m.error = error;
    } else {
      report.load_ended(m.mkey, d);
      m.loaded = std::move(loaded[i]);
    }
  }
}

}  // namespace cacheaside::detail
