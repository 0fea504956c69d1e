// The miss path of one cache: single-flight, leases through the lookup
// protocol, the loaders, the fail-safe, loader timeouts and early refresh
// (internal).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../clock.hpp"
#include "../error.hpp"
#include "../options.hpp"
#include "../protocol.hpp"
#include "flight.hpp"
#include "pending.hpp"
#include "reporter.hpp"
#include "throttle.hpp"
#include "value_codec.hpp"

namespace cacheaside::detail {

/// get and get_many hand it their misses; one state machine serves both.
///
/// Why a follower may look again: a flight's result is taken only by callers
/// that joined before the operation that proved it current began (a read, a
/// loader call, or a store guarded by a lease; see flight.hpp). A caller that
/// joined later may have begun after an invalidation the result predates.
template <class Key, class Value, class Serializer>
class MissPath {
 public:
  using Loader = std::function<std::optional<Value>(const Key&)>;
  using BulkLoader = std::function<std::vector<std::optional<Value>>(const std::vector<Key>&)>;

  /// One distinct key on its way through a miss: the state machine's unit.
  struct Miss {
    explicit Miss(const Key& k, std::string mk = {}, Lookup l = {})
        : key(k), mkey(std::move(mk)), look(std::move(l)) {}
    Key key;
    std::string mkey;
    Lookup look;
    std::size_t slot = 0;                    // get_many: index among the distinct keys
    typename FlightTable<Value>::Joined fl;  // the flight it leads or follows
    Stamp seen = no_joiner;                  // stamp before the call that produced `look`
    std::optional<Value> stale;              // a servable stale copy (fail-safe)
    std::optional<Value> value;              // the result
    bool done = false;
    bool store = false;  // the load's result may be stored (look.token)
  };

  MissPath(Loader loader, BulkLoader bulk_loader, const Options& opt, Clock& clock,
           const Reporter& report, const ValueCodec<Value, Serializer>& codec,
           LookupProtocol& protocol, const PendingInvalidations& pending)
      : loader_(std::move(loader)),
        bulk_loader_(std::move(bulk_loader)),
        opt_(opt),
        clock_(clock),
        report_(report),
        codec_(codec),
        protocol_(protocol),
        pending_(pending),
        flights_(opt.single_flight),
        throttle_(opt.fail_safe_throttle, clock) {
    if (!loader_) throw Error("cacheaside: loader is empty");
  }

  ~MissPath() {
    std::unique_lock<std::mutex> lock(bg_mu_);
    bg_cv_.wait(lock, [&] { return bg_count_ == 0; });
  }

  void set_bulk_loader(BulkLoader bulk) { bulk_loader_ = std::move(bulk); }

  /// After a write to mkey in this process: loads running now serve nobody who
  /// asks later, and a throttled stale copy is gone.
  void forget(const std::string& mkey) {
    flights_.forget(mkey);
    throttle_.clear(mkey);
  }

  /// Gives up a lookup of a key whose invalidation is pending here (memcached
  /// may still have the old value): a right it won is handed back.
  void drop(const std::string& mkey, Lookup& l) {
    if (l.state == LookupState::won) protocol_.release(mkey, l.token);
    l.reset();
  }

  /// Flights running and keys the fail-safe throttle holds, now.
  std::size_t flights() { return flights_.size(); }
  std::size_t throttled() { return throttle_.size(); }

  /// A hit XFetch picked to refresh early: one caller reloads (others keep
  /// hitting); if anything goes wrong the still-fresh value is returned.
  std::optional<Value> refresh_early(Miss& m, std::optional<Value> current) {
    auto joined = flights_.try_lead(m.mkey);
    if (!joined) return current;  // someone here is already loading it
    m.fl = std::move(*joined);
    std::optional<Value> result = current;
    Stamp proof = no_joiner;  // read before anyone joined
    try {
      protocol_.acquire(m.mkey, m.look);
      if (m.look.state == LookupState::won) {
        Reporter::bump(report_.stats.early_refreshes);
        report_.emit(EventType::early_refresh, m.mkey);
        m.store = true;
        Stamp s = flights_.stamp();
        try {
          Loaded l = call_loader(m.key, m.mkey);
          proof = commit(m, l.value, l.load_us, s);
          result = std::move(l.value);
        } catch (...) {
          protocol_.release(m.mkey, m.look.token);  // keep serving the fresh value
          m.store = false;
        }
      } else if (m.look.state == LookupState::error) {
        report_.cache_error(m.mkey, m.look.status, m.look.op);
      }
      finish(m, result, false, proof);
    } catch (...) {
      std::vector<Miss*> one{&m};
      abandon(one, std::current_exception());
    }
    return result;  // current unless a load replaced it
  }

  /// The loader alone, for a key that cannot be cached.
  std::optional<Value> load_uncached(const Key& key, const std::string& mkey) {
    return call_loader(key, mkey).value;
  }

  /// Loads keys that cannot be cached (their group generation could not be read):
  /// no flight, nothing stored.
  void load_uncached(std::vector<Miss>& ms, bool bulk) {
    std::vector<Miss*> all;
    for (Miss& m : ms) {
      m.fl = flights_.alone(no_joiner);
      m.store = false;
      all.push_back(&m);
    }
    load(all, bulk);
  }

  /// The miss state machine, for get (one key) and get_many (many): join flights,
  /// lead what nobody here is loading, follow the rest; a follower whose flight's
  /// result is older than its own start looks again.
  void resolve(std::vector<Miss>& ms, bool bulk) {
    auto start = std::chrono::steady_clock::now();  // loader timeouts are real time
    for (int round = 0; round < max_rounds; ++round) {
      std::vector<Miss*> leaders, followers;
      for (Miss& m : ms) {
        if (m.done) continue;
        // The last round leads privately: a caller never loops on other flights.
        if (round + 1 == max_rounds) {
          m.fl = flights_.alone(flights_.stamp());
        } else if (m.look.state == LookupState::won) {
          // The read itself won the right to load (a protocol that leases in the
          // read). If a flight here already waits for that right, hand it over: its
          // leader's next look takes it, and this caller follows.
          if (auto led = flights_.try_lead(m.mkey)) {
            m.fl = std::move(*led);
          } else {
            protocol_.release(m.mkey, m.look.token);
            m.look.reset();
            m.fl = flights_.join(m.mkey);
          }
        } else {
          m.fl = flights_.join(m.mkey);
        }
        m.stale.reset();
        if (m.look.state == LookupState::stale && !codec_.decode(m.mkey, m.look, m.stale))
          m.look.state = LookupState::absent;
        if (!m.fl.leader && round == 0) Reporter::bump(report_.stats.coalesced);
        (m.fl.leader ? leaders : followers).push_back(&m);
      }
      if (!leaders.empty()) lead_all(leaders, bulk, start);
      bool again = false;
      for (Miss* m : followers) {
        if (await(*m, start)) continue;
        m->seen = flights_.stamp();
        read(*m);  // sourced before we joined: look again
        if (m->look.state == LookupState::hit && codec_.decode(m->mkey, m->look, m->value)) {
          m->done = true;
        } else {
          again = true;
        }
      }
      if (!again) return;
    }
  }

 private:
  using Take = typename Flight<Value>::Take;

  // A loaded value and how long its load took.
  struct Loaded {
    std::optional<Value> value;
    std::uint32_t load_us = 0;
  };

  static constexpr int max_rounds = 3;  // of following flights that turn out too old

  // Leads flights: inline, or for one timed get in the background while the
  // caller waits with its own timeouts (a timeout is the caller's, not the flight's).
  void lead_all(std::vector<Miss*>& leaders, bool bulk,
                std::chrono::steady_clock::time_point start) {
    bool timed = opt_.soft_timeout.count() > 0 || opt_.hard_timeout.count() > 0;
    if (timed && !bulk) {
      Miss& m = *leaders.front();
      bool started = true;
      try {
        start_background([this, copy = m]() mutable {
          std::vector<Miss*> one{&copy};
          try {
            lead_guarded(one, false);
          } catch (...) {
            // The flight has it: the caller gets it from there.
          }
        });
      } catch (const std::system_error&) {
        started = false;  // no thread to be had: load in this one, without the timeouts
      }
      if (started) {
        await(m, start);
        return;
      }
    }
    lead_guarded(leaders, bulk);
  }

  // lead, and whatever escapes it (bad_alloc, a Store or serializer that throws)
  // still ends every flight it leads and gives up its leases, so nobody waits for
  // them.
  void lead_guarded(std::vector<Miss*>& ls, bool bulk) {
    try {
      lead(ls, bulk);
    } catch (...) {
      abandon(ls, std::current_exception());
      throw;
    }
  }

  void abandon(std::vector<Miss*>& ms, std::exception_ptr error) {
    for (Miss* m : ms) {
      if (m->done) continue;
      try {
        if (m->store) protocol_.release(m->mkey, m->look.token);
      } catch (...) {
        // Best effort: the lease expires after lease_ttl anyway.
      }
      m->store = false;
      flights_.leave(m->mkey, m->fl.flight);
      m->fl.flight->fail(error);
      m->done = true;
    }
  }

  // Takes the right to load each key (waiting for holders elsewhere, bounded by
  // lease_wait), loads what it must, stores what it may, publishes every result.
  void lead(std::vector<Miss*>& ls, bool bulk) {
    std::vector<Miss*> to_load, busy;
    for (Miss* m : ls) {
      if (m->look.state == LookupState::stale && throttle_.active(m->mkey)) {
        report_.served_stale(m->mkey, "throttled");
        finish(*m, m->stale, true, no_joiner);
        continue;
      }
      m->seen = flights_.stamp();
      if (pending_.holds(m->mkey)) {
        drop(m->mkey, m->look);  // load, store nothing
      } else {
        protocol_.acquire(m->mkey, m->look);
      }
      settle(*m, to_load, busy, nullptr);
    }
    // Never wait holding a lease: what was won is loaded and stored first, else two
    // get_manys in two processes, each holding a key the other waits for, wait for
    // each other until lease_wait. The wait's bound counts from after those loads.
    std::exception_ptr failed;
    auto load_won = [&] {
      if (busy.empty() || to_load.empty()) return Clock::time_point::duration::zero();
      auto t0 = clock_.now();
      try {
        load(to_load, bulk);
      } catch (...) {
        failed = std::current_exception();  // its flights failed; the waits go on
      }
      to_load.clear();
      return clock_.now() - t0;
    };
    load_won();
    auto wait_start = clock_.now();
    auto deadline = wait_start + opt_.lease_wait;
    auto backoff = std::chrono::milliseconds(2);
    if (!busy.empty()) Reporter::bump(report_.stats.lease_waits, busy.size());
    while (!busy.empty()) {
      auto loading = load_won();  // leases won in the last poll
      wait_start += loading;
      deadline += loading;
      auto now = clock_.now();
      if (now >= deadline) {
        for (Miss* m : busy) {  // load without storing rather than wait longer
          Reporter::bump(report_.stats.lease_timeouts);
          report_.emit(EventType::lease_wait, m->mkey, now - wait_start, "timeout");
          m->store = false;
          to_load.push_back(m);
        }
        break;
      }
      clock_.sleep_for(std::min<Clock::time_point::duration>(backoff, deadline - now));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
      // All of them in one lookup round trip (which may take their leases).
      std::vector<Miss*> still, asked;
      std::vector<std::string> keys;
      for (Miss* m : busy) {
        m->seen = flights_.stamp();
        if (pending_.holds(m->mkey)) {
          m->look.reset();
          settle(*m, to_load, still, &wait_start);
        } else {
          asked.push_back(m);
          keys.push_back(m->mkey);
        }
      }
      if (asked.size() == 1) {
        protocol_.lookup(keys.front(), asked.front()->look);
      } else if (!asked.empty()) {
        std::vector<Lookup> looks;
        protocol_.lookup_many(keys, looks);
        for (std::size_t i = 0; i < asked.size(); ++i) asked[i]->look = std::move(looks[i]);
      }
      for (Miss* m : asked) {
        if (m->look.state != LookupState::hit && m->look.state != LookupState::busy)
          protocol_.acquire(m->mkey, m->look);
        settle(*m, to_load, still, &wait_start);
      }
      busy.swap(still);
    }
    load(to_load, bulk);
    if (failed) std::rethrow_exception(failed);
  }

  // Acts on an acquired lookup: a result, a load to make, or a wait.
  void settle(Miss& m, std::vector<Miss*>& to_load, std::vector<Miss*>& busy,
              const Clock::time_point* waited_since) {
    std::optional<Value> v;
    m.store = false;
    switch (m.look.state) {
      case LookupState::busy:
        busy.push_back(&m);
        return;
      case LookupState::hit:
        if (!codec_.decode(m.mkey, m.look, v)) break;  // unreadable: load, don't store
        if (waited_since) report_.emit(EventType::lease_wait, m.mkey, clock_.now() - *waited_since);
        return finish(m, std::move(v), false, m.seen);
      case LookupState::stale:  // someone else refreshes it
        if (!codec_.decode(m.mkey, m.look, v)) break;
        report_.served_stale(m.mkey, "lease_busy");
        return finish(m, std::move(v), true, no_joiner);
      case LookupState::won:
        m.store = true;
        break;
      case LookupState::error:
        report_.cache_error(m.mkey, m.look.status, m.look.op);
        break;
      case LookupState::absent:
        break;
    }
    to_load.push_back(&m);
  }

  // One bulk loader call, or the loader key by key; then commit and publish.
  void load(std::vector<Miss*>& ms, bool bulk) {
    if (ms.empty()) return;
    std::exception_ptr unrecovered;
    if (bulk && bulk_loader_) {
      std::vector<Key> keys;
      keys.reserve(ms.size());
      for (Miss* m : ms) keys.push_back(m->key);
      Stamp s = flights_.stamp();
      Reporter::bump(report_.stats.loads, ms.size());
      for (Miss* m : ms) report_.emit(EventType::load_start, m->mkey);
      auto t0 = clock_.now();
      std::vector<std::optional<Value>> loaded;
      std::exception_ptr error;
      try {
        loaded = bulk_loader_(keys);
        if (loaded.size() != keys.size())
          throw Error("cacheaside: bulk loader returned " + std::to_string(loaded.size()) +
                      " values for " + std::to_string(keys.size()) + " keys");
      } catch (...) {
        error = std::current_exception();
        Reporter::bump(report_.stats.load_errors, keys.size());  // per key, like loads
      }
      auto d = clock_.now() - t0;
      if (error) {
        for (Miss* m : ms) {
          report_.emit(EventType::load_error, m->mkey, d, "bulk loader failed");
          if (!recover(*m, error)) unrecovered = error;
        }
      } else {
        for (Miss* m : ms) report_.emit(EventType::load_end, m->mkey, d);
        std::vector<std::uint32_t> load_us(ms.size(), micros(d));
        std::vector<Stamp> loaded_at(ms.size(), s);
        commit_and_finish(ms, loaded, load_us, loaded_at);
      }
    } else {
      // Key by key, then every store in one go.
      std::vector<Miss*> done;
      std::vector<std::optional<Value>> values;
      std::vector<std::uint32_t> load_us;
      std::vector<Stamp> loaded_at;
      for (Miss* m : ms) {
        Stamp s = flights_.stamp();
        try {
          Loaded l = call_loader(m->key, m->mkey);
          done.push_back(m);
          values.push_back(std::move(l.value));
          load_us.push_back(l.load_us);
          loaded_at.push_back(s);
        } catch (...) {
          if (!recover(*m, std::current_exception())) unrecovered = std::current_exception();
        }
      }
      commit_and_finish(done, values, load_us, loaded_at);
    }
    if (unrecovered) std::rethrow_exception(unrecovered);
  }

  // A failed load: the stale copy if there is one (and the throttle), else the
  // exception for every caller of the flight. True when recovered.
  bool recover(Miss& m, std::exception_ptr error) {
    if (m.store) protocol_.release(m.mkey, m.look.token);
    if (m.stale) {
      throttle_.start(m.mkey);
      report_.served_stale(m.mkey, "load_error");
      finish(m, m.stale, true, no_joiner);
      return true;
    }
    flights_.leave(m.mkey, m.fl.flight);
    m.fl.flight->fail(error);
    m.done = true;
    return false;
  }

  // Stores what loaded (commit_all) and publishes each result.
  void commit_and_finish(std::vector<Miss*>& ms, std::vector<std::optional<Value>>& values,
                         const std::vector<std::uint32_t>& load_us,
                         const std::vector<Stamp>& loaded_at) {
    if (ms.empty()) return;
    std::vector<Stamp> proofs = commit_all(ms, values, load_us, loaded_at);
    for (std::size_t i = 0; i < ms.size(); ++i)
      finish(*ms[i], std::move(values[i]), false, proofs[i]);
  }

  // Stores a loaded value if the lookup won the right to, and returns the stamp
  // that proves it current: the guarded store's when it succeeded (no write came
  // between the lease and the store), else the loader call's.
  Stamp commit(Miss& m, const std::optional<Value>& value, std::uint32_t load_us, Stamp loaded_at) {
    std::vector<Miss*> one{&m};
    return commit_all(one, &value, &load_us, &loaded_at).front();
  }

  std::vector<Stamp> commit_all(std::vector<Miss*>& ms,
                                const std::vector<std::optional<Value>>& values,
                                const std::vector<std::uint32_t>& load_us,
                                const std::vector<Stamp>& loaded_at) {
    return commit_all(ms, values.data(), load_us.data(), loaded_at.data());
  }

  // commit() for several keys, with every store in one pipeline where the
  // protocol can.
  std::vector<Stamp> commit_all(std::vector<Miss*>& ms, const std::optional<Value>* values,
                                const std::uint32_t* load_us, const Stamp* loaded_at) {
    std::vector<Stamp> proofs(loaded_at, loaded_at + ms.size());
    std::vector<Encoded> encoded(ms.size());
    std::vector<CommitRequest> requests;
    std::vector<std::size_t> which;
    std::vector<char> guarded;
    for (std::size_t i = 0; i < ms.size(); ++i) {
      Miss& m = *ms[i];
      if (!m.store) continue;
      m.store = false;
      if (!codec_.encode(m.mkey, values[i], load_us[i], encoded[i])) {
        protocol_.release(m.mkey, m.look.token);
        continue;
      }
      CommitRequest r;
      r.key = m.mkey;
      r.token = &m.look.token;
      r.bytes = encoded[i].bytes;
      r.flags = encoded[i].flags;
      r.exptime = encoded[i].exptime;
      requests.push_back(r);
      which.push_back(i);
      guarded.push_back(m.look.token.guarded() ? 1 : 0);
    }
    if (requests.empty()) return proofs;
    Stamp s = flights_.stamp();
    if (requests.size() == 1) {
      CommitRequest& r = requests.front();
      r.status = protocol_.commit(r.key, *r.token, r.bytes, r.flags, r.exptime);
    } else {
      protocol_.commit_many(requests);
    }
    for (std::size_t j = 0; j < requests.size(); ++j) {
      std::size_t i = which[j];
      if (report_.write(ms[i]->mkey, requests[j].status, guarded[j] ? "cas" : "set") && guarded[j])
        proofs[i] = s;
    }
    return proofs;
  }

  // Publishes a result to the flight's followers (after leaving the table, so
  // later callers start anew) and keeps it for the caller.
  void finish(Miss& m, std::optional<Value> v, bool stale, Stamp proof) {
    flights_.leave(m.mkey, m.fl.flight);
    m.fl.flight->publish(v, stale, proof);
    m.value = std::move(v);
    m.done = true;
  }

  // Waits for the flight m follows (or leads from the background), within the
  // loader timeouts. False when its result is older than m's start: look again.
  bool await(Miss& m, std::chrono::steady_clock::time_point start) {
    Flight<Value>& f = *m.fl.flight;
    if (opt_.soft_timeout.count() > 0 && m.stale && !f.wait_until(start + opt_.soft_timeout)) {
      Reporter::bump(report_.stats.load_timeouts);
      report_.served_stale(m.mkey, "soft_timeout");
      m.value = std::move(m.stale);
      return m.done = true;
    }
    if (opt_.hard_timeout.count() > 0 && !f.wait_until(start + opt_.hard_timeout)) {
      Reporter::bump(report_.stats.load_timeouts);
      if (!m.stale)
        throw TimeoutError("cacheaside: loader for '" + m.mkey + "' ran past hard_timeout");
      report_.served_stale(m.mkey, "hard_timeout");
      m.value = std::move(m.stale);
      return m.done = true;
    }
    f.wait();
    switch (f.take(m.fl.stamp, m.value, m.fl.leader)) {
      case Take::value:
        return m.done = true;
      case Take::stale:
        // The leader served a stale copy (fail-safe). A follower serves its own, read
        // after it began, never the leader's: that may predate an invalidation.
        if (m.fl.leader) return m.done = true;
        if (!m.stale) return false;
        report_.served_stale(m.mkey, "shared");
        m.value = std::move(m.stale);
        return m.done = true;
      case Take::retry:
        break;
    }
    return false;
  }

  // A read, unless an invalidation of the key is pending here: memcached may
  // still have the old value, so it counts as absent.
  void read(Miss& m) {
    if (pending_.holds(m.mkey)) return m.look.reset();
    protocol_.read(m.mkey, m.look);
  }

  static std::uint32_t micros(Clock::time_point::duration d) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    return static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, 0xFFFFFFFFll));
  }

  Loaded call_loader(const Key& key, const std::string& mkey) {
    Reporter::bump(report_.stats.loads);
    report_.emit(EventType::load_start, mkey);
    auto t0 = clock_.now();
    Loaded l;
    try {
      l.value = loader_(key);
    } catch (const std::exception& ex) {
      Reporter::bump(report_.stats.load_errors);
      report_.emit(EventType::load_error, mkey, clock_.now() - t0, ex.what());
      throw;
    } catch (...) {
      Reporter::bump(report_.stats.load_errors);
      report_.emit(EventType::load_error, mkey, clock_.now() - t0, "unknown exception");
      throw;
    }
    auto d = clock_.now() - t0;
    report_.emit(EventType::load_end, mkey, d);
    l.load_us = micros(d);
    return l;
  }

  template <class Fn>
  void start_background(Fn&& fn) {
    {
      std::lock_guard<std::mutex> lock(bg_mu_);
      ++bg_count_;
    }
    try {
      std::thread([this, fn = std::forward<Fn>(fn)]() mutable {
        fn();
        std::lock_guard<std::mutex> lock(bg_mu_);
        --bg_count_;
        bg_cv_.notify_all();
      }).detach();
    } catch (...) {
      std::lock_guard<std::mutex> lock(bg_mu_);
      --bg_count_;
      throw;
    }
  }

  Loader loader_;
  BulkLoader bulk_loader_;
  const Options& opt_;
  Clock& clock_;
  const Reporter& report_;
  const ValueCodec<Value, Serializer>& codec_;
  LookupProtocol& protocol_;
  const PendingInvalidations& pending_;
  FlightTable<Value> flights_;
  FailSafeThrottle throttle_;

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  int bg_count_ = 0;
};

}  // namespace cacheaside::detail
