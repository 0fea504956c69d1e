// The leader's side of a miss, as machines without I/O (internal): LoadFsm
// loads keys, stores what it may and publishes every result; LeadFsm first
// takes the right to load each key, waiting (bounded by lease_wait) for keys
// another process holds.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../protocol.hpp"
#include "../lookup/value_codec.hpp"
#include "context.hpp"
#include "coroutine.hpp"
#include "miss.hpp"

namespace cacheaside::detail {

/// Loads keys (one bulk call, or the loader key by key), then stores each result
/// as its lookup allows, in one commit, and publishes it to its flight. A failed
/// load serves the key's stale copy if it has one, else fails its flight.
template <class Key, class Value, class Serializer>
class LoadFsm {
 public:
  using Ctx = ReadContext<Key, Value, Serializer>;
  using M = Miss<Key, Value>;
  using Act = Action<M>;

  explicit LoadFsm(Ctx& c) : c_(c) {}

  void start(std::vector<M*> ms, bool bulk) {
    ms_ = std::move(ms);
    bulk_ = bulk;
    unrecovered_ = nullptr;
    coro_ = 0;
  }

  /// The next action; done when every key is published (or failed).
  Act resume() {
    CACHEASIDE_CORO_BEGIN(coro_)
    if (ms_.empty()) return Act();
    if (bulk_) {
      stamp_ = c_.flights.stamp();
      for (M* m : ms_) m->loaded_at = stamp_, m->error = nullptr;
      CACHEASIDE_CORO_YIELD(coro_, load(ms_, true));
    } else {
      for (i_ = 0; i_ < ms_.size(); ++i_) {
        one_.assign(1, ms_[i_]);
        ms_[i_]->loaded_at = c_.flights.stamp();  // right before its loader call
        ms_[i_]->error = nullptr;
        CACHEASIDE_CORO_YIELD(coro_, load(one_, false));
      }
    }
    // Failed loads give up their leases, then serve stale or fail their flight.
    list_.clear();
    for (M* m : ms_)
      if (m->error && m->store) list_.push_back(m);
    if (!list_.empty()) CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, list_));
    ok_.clear();
    for (M* m : ms_) {
      if (!m->error) {
        ok_.push_back(m);
        continue;
      }
      m->store = false;
      if (m->stale) {
        c_.throttle.start(m->mkey);
        c_.report.served_stale(m->mkey, "load_error");
        c_.finish(*m, m->stale, true, no_joiner);
      } else {
        unrecovered_ = m->error;
        c_.fail(*m, m->error);
      }
    }
    // Stores: the proof of each result is the guarded store's stamp when it
    // stored (no write came between the lease and the store), else its load's.
    proofs_.clear();
    encoded_.assign(ok_.size(), Encoded());
    commits_.clear();
    which_.clear();
    list_.clear();
    for (std::size_t j = 0; j < ok_.size(); ++j) {
      M& m = *ok_[j];
      proofs_.push_back(m.loaded_at);
      if (!m.store) continue;
      m.store = false;
      if (!c_.codec.encode(m.mkey, m.loaded, m.load_us, encoded_[j])) {
        list_.push_back(&m);  // not storable: hand the lease back
        continue;
      }
      CommitRequest r;
      r.key = m.mkey;
      r.token = &m.look.token;
      r.bytes = encoded_[j].bytes;
      r.flags = encoded_[j].flags;
      r.exptime = encoded_[j].exptime;
      commits_.push_back(r);
      which_.push_back({j, m.look.token.guarded()});
    }
    if (!list_.empty()) CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, list_));
    if (!commits_.empty()) {
      stamp_ = c_.flights.stamp();
      CACHEASIDE_CORO_YIELD(coro_, commit());
      for (std::size_t k = 0; k < commits_.size(); ++k) {
        auto [j, guarded] = which_[k];
        if (c_.report.write(ok_[j]->mkey, commits_[k].status, guarded ? "cas" : "set") && guarded)
          proofs_[j] = stamp_;
      }
    }
    for (std::size_t j = 0; j < ok_.size(); ++j)
      c_.finish(*ok_[j], std::move(ok_[j]->loaded), false, proofs_[j]);
    CACHEASIDE_CORO_END(coro_)
    return Act();
  }

  /// The last load error no stale copy covered (its flight failed with it).
  std::exception_ptr unrecovered() const { return unrecovered_; }

 private:
  static Act load(std::vector<M*>& ms, bool bulk) {
    Act a = Act::on(Step::load, ms);
    a.bulk = bulk;
    return a;
  }
  Act commit() {
    Act a;
    a.step = Step::commit;
    a.commits = &commits_;
    return a;
  }

  Ctx& c_;
  int coro_ = 0;
  std::vector<M*> ms_, one_, ok_, list_;
  bool bulk_ = false;
  std::size_t i_ = 0;
  std::vector<Stamp> proofs_;
  std::vector<Encoded> encoded_;
  std::vector<CommitRequest> commits_;
  std::vector<std::pair<std::size_t, bool>> which_;  // commit k: ok_ index, guarded
  Stamp stamp_ = no_joiner;                          // before the bulk load, then before the commit
  std::exception_ptr unrecovered_;
};

/// Leads flights: takes the right to load each key (a lookup may already have
/// won it), waits with backoff for keys another process holds, loads and
/// stores. It never waits holding a lease: what it won is loaded and stored
/// before it polls for the rest, else two of them in two processes, each
/// holding a key the other waits for, would wait for each other.
template <class Key, class Value, class Serializer>
class LeadFsm {
 public:
  using Ctx = ReadContext<Key, Value, Serializer>;
  using M = Miss<Key, Value>;
  using Act = Action<M>;

  LeadFsm(Ctx& c, std::vector<M*> leaders, bool bulk)
      : c_(c), ls_(std::move(leaders)), bulk_(bulk), load_(c) {}

  /// The next action; done (with the error no stale copy covered) when every
  /// flight it leads has ended.
  Act resume(Clock::time_point now) {
    now_ = now;
    CACHEASIDE_CORO_BEGIN(coro_)
    for (M* m : ls_) {
      if (m->look.state == LookupState::stale && c_.throttle.active(m->mkey)) {
        c_.report.served_stale(m->mkey, "throttled");
        c_.finish(*m, m->stale, true, no_joiner);
        continue;
      }
      m->seen = c_.flights.stamp();
      if (m->no_store || m->held || c_.pending.holds(m->mkey)) {
        m->held = true;
        held_.push_back(m);  // load, store nothing
        if (m->look.state == LookupState::won) list_.push_back(m);
      } else {
        asked_.push_back(m);
      }
    }
    if (!list_.empty()) CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, list_));
    for (M* m : held_) m->look.reset();
    if (!asked_.empty()) CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::acquire, asked_));
    for (M* m : ls_)
      if (!m->done) c_.settle(*m, to_load_, busy_, now_, nullptr);

    wait_start_ = now_;
    deadline_ = now_ + c_.opt.lease_wait;
    backoff_ = std::chrono::milliseconds(2);
    if (!busy_.empty()) c_.report.lease_waits(busy_.size());
    for (;;) {
      if (!to_load_.empty()) {  // what it won: loaded and stored before it waits on
        t0_ = now_;
        load_.start(std::move(to_load_), bulk_);
        to_load_.clear();
        CACHEASIDE_CORO_YIELD_FROM(coro_, act_, load_.resume(), Step::done);
        if (load_.unrecovered()) failed_ = load_.unrecovered();
        wait_start_ += now_ - t0_;  // the wait's bound counts without the loads
        deadline_ += now_ - t0_;
      }
      if (busy_.empty()) break;
      if (now_ >= deadline_) {
        for (M* m : busy_) {  // load without storing rather than wait longer
          c_.report.lease_wait_timed_out(m->mkey, now_ - wait_start_);
          m->store = false;
          to_load_.push_back(m);
        }
        busy_.clear();
        continue;  // their loads, then done
      }
      CACHEASIDE_CORO_YIELD(coro_, sleep());
      // All of them in one lookup round trip (which may take their leases).
      still_.clear();
      asked_.clear();
      for (M* m : busy_) {
        m->seen = c_.flights.stamp();
        if (c_.pending.holds(m->mkey)) {
          m->look.reset();
          c_.settle(*m, to_load_, still_, now_, &wait_start_);
        } else {
          asked_.push_back(m);
        }
      }
      if (!asked_.empty()) CACHEASIDE_CORO_YIELD(coro_, lookup(asked_));
      list_.clear();
      for (M* m : asked_)
        if (m->look.state != LookupState::hit && m->look.state != LookupState::busy)
          list_.push_back(m);
      if (!list_.empty()) CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::acquire, list_));
      for (M* m : asked_) c_.settle(*m, to_load_, still_, now_, &wait_start_);
      busy_.swap(still_);
    }
    CACHEASIDE_CORO_END(coro_)
    Act done;
    done.error = failed_;
    return done;
  }

  /// Something escaped the driver (bad_alloc, a store or serializer that threw):
  /// every flight it leads ends with it. Returns the keys whose lease is still
  /// held, for the driver to give up (best effort: it expires after lease_ttl).
  std::vector<M*>& abandon(std::exception_ptr error) {
    list_.clear();
    for (M* m : ls_) {
      if (m->done) continue;
      if (m->store) list_.push_back(m);
      c_.fail(*m, error);
    }
    coro_ = -1;
    return list_;
  }

  const std::vector<M*>& leaders() const { return ls_; }

 private:
  Act sleep() {
    Act a;
    a.step = Step::sleep;
    a.delay = std::min<Duration>(backoff_, deadline_ - now_);
    backoff_ = std::min<Duration>(backoff_ * 2, std::chrono::milliseconds(50));
    return a;
  }
  static Act lookup(std::vector<M*>& ms) {
    Act a = Act::on(Step::lookup, ms);
    a.lease = true;
    return a;
  }

  Ctx& c_;
  std::vector<M*> ls_;
  bool bulk_;
  LoadFsm<Key, Value, Serializer> load_;
  int coro_ = 0;
  Clock::time_point now_{}, wait_start_{}, deadline_{}, t0_{};
  Duration backoff_{};
  std::vector<M*> held_, asked_, list_, to_load_, busy_, still_;
  Act act_;
  std::exception_ptr failed_;
};

}  // namespace cacheaside::detail
