// The one read path of get, get_many and peek, as a machine without I/O
// (internal): near cache, pending hold-out, lookup, decode, early refresh, and
// for misses single-flight with leaders (LeadFsm) and followers.
//
// Why a follower may look again: a flight's result is taken only by callers
// that joined before the operation that proved it current began (a read, a
// loader call, or a store guarded by a lease; see flight.hpp). A caller that
// joined later may have begun after an invalidation the result predates.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../error.hpp"
#include "../../protocol.hpp"
#include "../lookup/value_codec.hpp"
#include "../random.hpp"
#include "context.hpp"
#include "coroutine.hpp"
#include "lead_fsm.hpp"
#include "miss.hpp"
#include "refresh_fsm.hpp"

namespace cacheaside::detail {

template <class Key, class Value, class Serializer>
class ReadFsm {
 public:
  using Ctx = ReadContext<Key, Value, Serializer>;
  using M = Miss<Key, Value>;
  using Act = Action<M>;
  using Lead = LeadFsm<Key, Value, Serializer>;

  /// get: the loader fills misses; peek: the cache only.
  enum class Mode { get, peek };

  /// A leader's work running apart from its caller (loader timeouts): it owns
  /// copies of the keys it leads, so it may outlive the caller.
  struct Detached {
    Detached(Ctx& c, std::vector<M> copies, bool bulk)
        : units(std::move(copies)), fsm(c, pointers(units), bulk) {}
    std::vector<M> units;
    Lead fsm;

   private:
    static std::vector<M*> pointers(std::vector<M>& us) {
      std::vector<M*> ps;
      for (M& u : us) ps.push_back(&u);
      return ps;
    }
  };

  /// capacity: how many distinct keys add() will be given.
  ReadFsm(Ctx& c, Mode mode, bool bulk, std::size_t capacity) : c_(c), mode_(mode), bulk_(bulk) {
    units_.reserve(capacity);
  }

  /// A distinct key; cacheable false: its memcached key is unknown (no group
  /// generation), so it is loaded and nothing is stored.
  M& add(const Key& key, std::string mkey, bool cacheable) {
    units_.emplace_back(key, std::move(mkey));
    units_.back().no_store = !cacheable;
    return units_.back();
  }

  std::vector<M>& units() { return units_; }

  /// With Step::lead: the lead to run apart (the driver takes it).
  std::shared_ptr<Detached> take_detached() { return std::move(detached_); }

  /// The next action, given the time now; done when every key has its value.
  Act resume(Clock::time_point now) {
    now_ = now;
    CACHEASIDE_CORO_BEGIN(coro_)
    start_ = now_;
    for (M& m : units_) {
      if (m.no_store || (m.held = c_.pending.holds(m.mkey))) {
        // memcached may still hold the old value (or the key is unknown)
        if (mode_ == Mode::peek) {
          m.done = true;
        } else {
          if (!m.no_store) c_.report.miss(m.mkey);
          misses_.push_back(&m);
        }
        continue;
      }
      if (c_.near) {
        if (c_.near_hit(m.mkey, m.value, mode_ == Mode::get)) {
          m.done = true;
          continue;
        }
        m.ticket = c_.near->ticket(m.mkey);  // before the read: a write after it voids the offer
      }
      look_.push_back(&m);
    }
    if (!look_.empty()) CACHEASIDE_CORO_YIELD(coro_, lookup(look_, mode_ == Mode::get));
    // An invalidation that failed meanwhile holds the key out too.
    list_.clear();
    for (M* m : look_) {
      m->held = m->held || c_.pending.holds(m->mkey);
      if (m->held && m->look.state == LookupState::won) list_.push_back(m);
    }
    if (!list_.empty()) CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, list_));
    for (M* m : look_) classify(*m);

    // Early refresh (XFetch): one caller reloads, the others keep hitting.
    for (i_ = 0; i_ < refresh_.size(); ++i_) {
      refresh_fsm_.start(refresh_[i_]);
      CACHEASIDE_CORO_YIELD_FROM(coro_, act_, refresh_fsm_.resume(), Step::done);
    }

    // Misses: join flights, lead what nobody here is loading, follow the rest;
    // a follower whose flight's result is older than its own start looks again.
    for (round_ = 0; round_ < max_rounds && !misses_.empty(); ++round_) {
      leaders_.clear();
      followers_.clear();
      for (i_ = 0; i_ < misses_.size(); ++i_) {
        cur_ = misses_[i_];
        if (cur_->done) continue;
        if (round_ + 1 == max_rounds) {
          // The last round leads privately: a caller never loops on other flights.
          cur_->fl = c_.flights.alone(c_.flights.stamp());
        } else if (cur_->look.state == LookupState::won) {
          // The read itself won the right to load (a protocol that leases in the
          // read). If a flight here already waits for that right, hand it over: its
          // leader's next look takes it, and this caller follows.
          led_ = c_.flights.try_lead(cur_->mkey);
          if (led_) {
            cur_->fl = std::move(*led_);
          } else {
            one_.assign(1, cur_);
            CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, one_));
            cur_->look.reset();
            cur_->fl = c_.flights.join(cur_->mkey);
          }
        } else {
          cur_->fl = c_.flights.join(cur_->held ? held_flight_key(cur_->mkey) : cur_->mkey);
        }
        cur_->stale.reset();
        if (cur_->look.state == LookupState::stale &&
            !c_.codec.decode(cur_->mkey, cur_->look, cur_->stale))
          cur_->look.state = LookupState::absent;
        if (!cur_->fl.leader && round_ == 0) c_.report.coalesced();
        (cur_->fl.leader ? leaders_ : followers_).push_back(cur_);
      }
      if (!leaders_.empty() && timed() && !bulk_) {
        // Led in the background while each caller waits within its own timeouts
        // (a timeout is the caller's, not the flight's).
        {
          std::vector<M> copies;
          for (M* m : leaders_) copies.push_back(*m), m->detached = true;
          detached_ = std::make_shared<Detached>(c_, std::move(copies), bulk_);
        }
        followers_.insert(followers_.begin(), leaders_.begin(), leaders_.end());
        CACHEASIDE_CORO_YIELD(coro_, detach());
      } else if (!leaders_.empty()) {
        lead_ = std::make_unique<Lead>(c_, leaders_, bulk_);
        CACHEASIDE_CORO_YIELD_FROM(coro_, act_, lead_->resume(now_), Step::done);
        lead_.reset();
        if (act_.error) return finish(act_.error);
      }
      again_ = false;
      for (i_ = 0; i_ < followers_.size(); ++i_) {
        cur_ = followers_[i_];
        if (c_.opt.soft_timeout.count() > 0 && cur_->stale) {
          CACHEASIDE_CORO_YIELD(coro_, await(cur_, true, start_ + c_.opt.soft_timeout));
          if (!cur_->ready) {
            c_.report.load_timed_out();
            c_.report.served_stale(cur_->mkey, "soft_timeout");
            cur_->value = std::move(cur_->stale);
            cur_->done = true;
            continue;
          }
        }
        if (c_.opt.hard_timeout.count() > 0) {
          CACHEASIDE_CORO_YIELD(coro_, await(cur_, true, start_ + c_.opt.hard_timeout));
          if (!cur_->ready) {
            c_.report.load_timed_out();
            if (!cur_->stale)
              return finish(std::make_exception_ptr(TimeoutError(
                  "cacheaside: loader for '" + cur_->mkey + "' ran past hard_timeout")));
            c_.report.served_stale(cur_->mkey, "hard_timeout");
            cur_->value = std::move(cur_->stale);
            cur_->done = true;
            continue;
          }
        }
        CACHEASIDE_CORO_YIELD(coro_, await(cur_, false, {}));
        switch (take(*cur_)) {
          case Taken::done:
            continue;
          case Taken::error:
            return finish(error_);
          case Taken::again:
            break;
        }
        cur_->seen = c_.flights.stamp();
        // Once held, always: a group bump applied meanwhile would not cover the key
        // this read built under the generation it read before.
        if (cur_->held || c_.pending.holds(cur_->mkey)) {
          cur_->held = true;
          cur_->look.reset();
        } else {
          one_.assign(1, cur_);
          CACHEASIDE_CORO_YIELD(coro_, lookup(one_, false));  // sourced before we joined
        }
        if (cur_->look.state == LookupState::hit &&
            c_.codec.decode(cur_->mkey, cur_->look, cur_->value)) {
          cur_->done = true;
        } else {
          again_ = true;
        }
      }
      if (!again_) break;
    }
    CACHEASIDE_CORO_END(coro_)
    return finish(nullptr);
  }

  /// Something escaped the driver: every flight this read leads ends with it.
  /// Returns the keys whose lease is still held, for the driver to give up
  /// (best effort: a lease expires after lease_ttl anyway).
  std::vector<M*>& abandon(std::exception_ptr error) {
    list_.clear();
    if (lead_) list_ = lead_->abandon(error);
    lead_.reset();
    for (M& m : units_) {
      if (m.done || m.detached || !m.fl.flight || !m.fl.leader) continue;
      if (m.store || m.look.state == LookupState::won) list_.push_back(&m);
      c_.fail(m, error);
    }
    coro_ = -1;
    return list_;
  }

 private:
  enum class Taken { done, again, error };
  static constexpr int max_rounds = 3;  // of following flights that turn out too old

  bool timed() const { return c_.opt.soft_timeout.count() > 0 || c_.opt.hard_timeout.count() > 0; }

  // A looked-up key: a hit is done (and may be due for early refresh); the rest
  // are misses (get) or nothing (peek).
  void classify(M& m) {
    if (m.held) {
      m.look.reset();
      if (mode_ == Mode::peek) {
        m.done = true;
        return;
      }
      c_.report.miss(m.mkey);
      misses_.push_back(&m);
      return;
    }
    if (m.look.state == LookupState::hit && c_.codec.decode(m.mkey, m.look, m.value)) {
      m.done = true;
      if (mode_ == Mode::peek) {
        if (m.look.negative) m.value.reset();
        return;
      }
      c_.report.hit(m.mkey, m.look.negative);
      if (c_.near) c_.near->offer(m.mkey, m.value, m.look.expiry_ms, m.ticket);
      if (m.value && refresh_due(m.look)) refresh_.push_back(&m);
      return;
    }
    if (mode_ == Mode::peek) {
      m.value.reset();
      m.done = true;
      return;
    }
    c_.report.miss(m.mkey);
    misses_.push_back(&m);
  }

  // XFetch: refresh when now - delta * beta * ln(rand) >= expiry.
  bool refresh_due(const Lookup& l) const {
    if (c_.opt.early_refresh_beta <= 0 || l.load_us == 0 || l.expiry_ms == 0) return false;
    double gap = -static_cast<double>(l.load_us) / 1000.0 * c_.opt.early_refresh_beta *
                 std::log(uniform_open0());
    // The time freshness was judged at: one clock read per hit.
    return static_cast<double>(l.read_ms) + gap >= static_cast<double>(l.expiry_ms);
  }

  // After an await: what the flight's result is for m.
  Taken take(M& m) {
    try {
      switch (m.fl.flight->take(m.fl.stamp, m.value, m.fl.leader)) {
        case Flight<Value>::Take::value:
          m.done = true;
          return Taken::done;
        case Flight<Value>::Take::stale:
          // The leader served a stale copy (fail-safe). A follower serves its own,
          // read after it began, never the leader's: that may predate an invalidation.
          if (m.fl.leader) {
            m.done = true;
            return Taken::done;
          }
          if (!m.stale) return Taken::again;
          c_.report.served_stale(m.mkey, "shared");
          m.value = std::move(m.stale);
          m.done = true;
          return Taken::done;
        case Flight<Value>::Take::retry:
          return Taken::again;
      }
    } catch (...) {
      error_ = std::current_exception();
      return Taken::error;
    }
    return Taken::again;
  }

  Act finish(std::exception_ptr error) {
    coro_ = -1;
    Act a;
    a.error = std::move(error);
    return a;
  }
  static Act lookup(std::vector<M*>& ms, bool lease) {
    Act a = Act::on(Step::lookup, ms);
    a.lease = lease;
    return a;
  }
  Act await(M* m, bool timed, Clock::time_point deadline) {
    m->ready = false;
    one_.assign(1, m);
    Act a = Act::on(Step::await, one_);
    a.timed = timed;
    a.deadline = deadline;
    return a;
  }
  static Act detach() {
    Act a;
    a.step = Step::lead;
    return a;
  }

  Ctx& c_;
  Mode mode_;
  bool bulk_;
  std::vector<M> units_;
  int coro_ = 0;
  Clock::time_point now_{}, start_{};
  std::vector<M*> look_, list_, one_, refresh_, misses_, leaders_, followers_;
  std::size_t i_ = 0;
  int round_ = 0;
  bool again_ = false;
  M* cur_ = nullptr;
  std::optional<typename FlightTable<Value>::Joined> led_;
  RefreshFsm<Key, Value, Serializer> refresh_fsm_{c_};
  std::unique_ptr<Lead> lead_;
  std::shared_ptr<Detached> detached_;
  Act act_;
  std::exception_ptr error_;
};

}  // namespace cacheaside::detail
