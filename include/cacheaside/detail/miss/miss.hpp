// One key on its way through a read, and the actions the read machines return
// to their driver (internal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../protocol.hpp"
#include "../near/near_cache.hpp"
#include "flight.hpp"

namespace cacheaside::detail {

/// One distinct key of a get, get_many or peek: the machines' unit.
template <class Key, class Value>
struct Miss {
  Miss(const Key& k, std::string mk) : key(k), mkey(std::move(mk)) {}
  Key key;
  std::string mkey;
  Lookup look;
  typename FlightTable<Value>::Joined fl;    // the flight it leads or follows
  Stamp seen = no_joiner;                    // stamp before the call that produced `look`
  std::optional<Value> stale;                // a servable stale copy (fail-safe)
  std::optional<Value> value;                // the result
  typename NearCache<Value>::Ticket ticket;  // near cache: taken before the read
  bool done = false;
  bool store = false;     // the load's result may be stored (look.token)
  bool held = false;      // an invalidation is pending here: bypass memcached
  bool no_store = false;  // the key cannot be cached (its group generation is unknown)
  bool detached = false;  // its flight is led by a copy in the background

  // Filled by the driver.
  std::optional<Value> loaded;  // load: what the loader returned
  std::exception_ptr error;     // load: what it threw
  std::uint32_t load_us = 0;    // load: how long it took
  Stamp loaded_at = no_joiner;  // load: stamp before the loader was called
  bool ready = false;           // await: the flight finished before the deadline
};

using Duration = Clock::time_point::duration;

/// What a machine needs done before it can go on. The driver does it and
/// resumes the machine with the time.
enum class Step {
  lookup,   // protocol lookup (lease: true) or read of ms, one round trip for all
  acquire,  // protocol acquire of each of ms
  release,  // protocol release of each of ms' tokens
  load,     // the bulk loader for ms (bulk), else the loader for ms' one key
  commit,   // protocol commit of commits (one pipeline where it can)
  sleep,    // resume after `delay`
  await,    // wait for ms' one flight, until `deadline` if `timed`
  lead,     // run the machine's detached lead to its end, where the driver likes
  done,     // finished: `error` for the caller, if any
};

template <class M>
struct Action {
  Step step = Step::done;
  std::vector<M*>* ms = nullptr;
  bool lease = false;  // lookup: may take the lease
  bool bulk = false;   // load: one bulk call
  std::vector<CommitRequest>* commits = nullptr;
  Duration delay{};
  bool timed = false;  // await: deadline applies
  Clock::time_point deadline{};
  std::exception_ptr error;

  static Action on(Step s, std::vector<M*>& keys) {
    Action a;
    a.step = s;
    a.ms = &keys;
    return a;
  }
};

/// Microseconds of d, saturated to 32 bits (the envelope's load time).
inline std::uint32_t load_micros(Duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return static_cast<std::uint32_t>(us < 0 ? 0 : (us > 0xFFFFFFFFll ? 0xFFFFFFFFll : us));
}

}  // namespace cacheaside::detail
