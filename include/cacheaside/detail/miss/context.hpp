// What the read machines of one cache share: its tables, codec and counters,
// and the small steps they all take (internal). Nothing here does I/O.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../options.hpp"
#include "../../protocol.hpp"
#include "../invalidation/pending.hpp"
#include "../lookup/value_codec.hpp"
#include "../near/near.hpp"
#include "../reporter.hpp"
#include "flight.hpp"
#include "miss.hpp"
#include "throttle.hpp"

namespace cacheaside::detail {

/// The in-process tables of loads running and of keys the fail-safe rests:
/// reads use them, writes reset them.
template <class Value>
struct MissTables {
  MissTables(const Options& opt, const Clock& clock)
      : flights(opt.single_flight), throttle(opt.fail_safe_throttle, clock) {}
  FlightTable<Value> flights;
  FailSafeThrottle throttle;
};

template <class Key, class Value, class Serializer>
class ReadContext {
 public:
  using M = Miss<Key, Value>;

  ReadContext(const Options& opt, const Reporter& report,
              const ValueCodec<Value, Serializer>& codec, const PendingInvalidations& pending,
              Near<Value>* near, MissTables<Value>& tables)
      : opt(opt),
        report(report),
        codec(codec),
        pending(pending),
        near(near),
        flights(tables.flights),
        throttle(tables.throttle) {}

  const Options& opt;
  const Reporter& report;
  const ValueCodec<Value, Serializer>& codec;
  const PendingInvalidations& pending;
  Near<Value>* near;  // null: off
  FlightTable<Value>& flights;
  FailSafeThrottle& throttle;

  /// mkey's value from the near cache, if it has one (counted as a near hit when
  /// count). The caller has checked that no pending invalidation holds mkey out.
  bool near_hit(const std::string& mkey, std::optional<Value>& out, bool count) const {
    if (!near || !near->get(mkey, out)) return false;
    if (count) report.near_hit(mkey, !out);
    return true;
  }

  /// Publishes a result to m's flight (after leaving the table, so later callers
  /// start anew) and keeps it for m's caller.
  void finish(M& m, std::optional<Value> v, bool stale, Stamp proof) {
    flights.leave(m.fl.key, m.fl.flight);
    m.fl.flight->publish(v, stale, proof);
    m.value = std::move(v);
    m.done = true;
  }

  /// Ends m's flight with an error: every follower gets it.
  void fail(M& m, std::exception_ptr error) {
    m.store = false;
    flights.leave(m.fl.key, m.fl.flight);
    m.fl.flight->fail(std::move(error));
    m.done = true;
  }

  /// Sorts an acquired lookup: a result (m done), a load to make, or a wait.
  /// waited_since: set when m was waiting for a lease (the event's duration).
  void settle(M& m, std::vector<M*>& to_load, std::vector<M*>& busy, Clock::time_point now,
              const Clock::time_point* waited_since) {
    std::optional<Value> v;
    m.store = false;
    switch (m.look.state) {
      case LookupState::busy:
        if (m.look.doubtful) break;  // perhaps nobody loads under it: nor waits for it
        busy.push_back(&m);
        return;
      case LookupState::hit:
        if (!codec.decode(m.mkey, m.look, v)) break;  // unreadable: load, don't store
        if (waited_since) report.lease_wait_ended(m.mkey, now - *waited_since);
        return finish(m, std::move(v), false, m.seen);
      case LookupState::stale:  // someone else refreshes it
        if (!codec.decode(m.mkey, m.look, v)) break;
        report.served_stale(m.mkey, "lease_busy");
        return finish(m, std::move(v), true, no_joiner);
      case LookupState::won:
        m.store = true;
        break;
      case LookupState::error:
        report.cache_error(m.mkey, m.look.status, m.look.op);
        break;
      case LookupState::absent:
        break;
    }
    to_load.push_back(&m);
  }
};

}  // namespace cacheaside::detail
