// The near-cache options both sides of the two-process coherence test use: the
// invalidation log is named after them, so they must agree.
#pragma once

#include <cacheaside/options.hpp>
#include <chrono>

namespace cacheaside_test {

inline cacheaside::Options coherence_options() {
  cacheaside::Options o;
  o.name = "coherence";
  o.ttl = std::chrono::seconds(120);
  o.early_refresh_beta = 0;
  o.near_ttl = std::chrono::seconds(60);
  o.near_sync = std::chrono::milliseconds(100);
  return o;
}

}  // namespace cacheaside_test
