// The lookup protocol over any Store, with memcached's classic commands: leases
// are an `add`ed marker whose CAS id guards the final `cas` (internal).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../envelope.hpp"
#include "../../protocol.hpp"
#include "../../store.hpp"
#include "../random.hpp"
#include "../sha256.hpp"
#include "judge.hpp"
#include "orphans.hpp"

namespace cacheaside::detail {

/// Works through anything that passes get/gets/add/cas/delete (twemproxy
/// included). A miss with leases costs get, add, gets, cas.
class ClassicProtocol final : public LookupProtocol {
 public:
  ClassicProtocol(std::shared_ptr<Store> store, LookupPolicy policy)
      : store_(std::move(store)), policy_(std::move(policy)) {
    if (!policy_.clock) policy_.clock = SystemClock::instance();
    if (!policy_.envelope) policy_.leases = false;
  }

  void read(std::string_view key, Lookup& out) override {
    StoreStatus st = store_->get(key, out.item);
    classify(key, st, out, policy_.clock->unix_ms());
  }

  void read_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) override {
    out.resize(keys.size());
    // Per call: a user callback below (on_unreadable) may run another batch here.
    std::vector<StoreItem> items;
    std::vector<char> found;
    StoreStatus st = store_->get_multi(keys, items, found);
    std::int64_t now = policy_.clock->unix_ms();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (is_failure(st)) {
        fail(out[i], st, "get_multi");
        continue;
      }
      if (found[i]) out[i].item = std::move(items[i]);
      classify(keys[i], found[i] ? StoreStatus::ok : StoreStatus::not_found, out[i], now);
    }
  }

  void acquire(std::string_view key, Lookup& l) override {
    if (l.state != LookupState::hit && l.state != LookupState::stale &&
        l.state != LookupState::absent)
      return;
    if (!policy_.leases) {  // anyone may store; nothing guards it
      l.state = LookupState::won;
      l.token = LeaseToken{};
      return;
    }
    if (l.state != LookupState::absent || l.present) return take_side_lease(key, l);
    // A handful of rounds: each one follows a write that came in between.
    for (int round = 0; round < 4; ++round) {
      std::string token = lease_token();
      StoreStatus st = store_->add(key, token, envelope::lease_flags(), lease_exptime());
      if (st == StoreStatus::ok && no_cas_.load(std::memory_order_relaxed)) {
        return won_unguarded(l);  // the marker still gives the load to one caller
      }
      if (st == StoreStatus::ok) {
        st = store_->get(key, l.item);
        if (st == StoreStatus::ok && l.item.value == token &&
            (l.item.flags & envelope::lease_bit)) {
          if (l.item.cas == 0) {  // a server without CAS ids (memcached -C)
            degrade();
            return won_unguarded(l);
          }
          l.state = LookupState::won;
          l.has_copy = false;
          l.token = LeaseToken{l.item.cas, true, {}};
          return;
        }
        if (is_failure(st)) {
          // Likely our marker; a delete is always safe.
          if (is_failure(store_->remove(key))) orphans_.add(key, token);
          return fail(l, st, "gets lease");
        }
      } else if (st == StoreStatus::not_stored) {
        st = store_->get(key, l.item);  // someone else was first: see what is there
      } else {
        // Unanswered, the add may still land (a frozen server runs it on waking).
        orphans_.add(key, token);
        return fail(l, st, "add lease");
      }
      classify(key, st, l, policy_.clock->unix_ms());
      if (l.state != LookupState::absent) return;     // hit, stale, busy or error
      if (l.present) return take_side_lease(key, l);  // expired meanwhile
    }
    l.state = LookupState::busy;  // writes keep coming: wait like for a lease
  }

  StoreStatus commit(std::string_view key, LeaseToken& token, std::string_view bytes,
                     std::uint32_t flags, Exptime exptime) override {
    StoreStatus st = token.guarded() ? store_->cas(key, bytes, flags, exptime, token.cas)
                                     : store_->set(key, bytes, flags, exptime);
    // Stored: the value replaced the marker. Refused: a write came first and what is
    // there now (a put's value, another caller's lease) is not ours to delete.
    if (st == StoreStatus::ok || st == StoreStatus::exists || st == StoreStatus::not_found)
      token.marker = false;
    release(key, token);
    return st;
  }

  void release(std::string_view key, LeaseToken& token) override {
    // Unless we stored, only our marker or someone's later write can be under
    // the key: a delete is always safe.
    if (token.marker && is_failure(store_->remove(key))) orphans_.add(key);
    if (!token.side_key.empty()) store_->remove(token.side_key);
    token = LeaseToken{};
  }

  StoreStatus store(std::string_view key, std::string_view bytes, std::uint32_t flags,
                    Exptime exptime) override {
    return store_->set(key, bytes, flags, exptime);
  }

  StoreStatus remove(std::string_view key) override { return store_->remove(key); }

  /// The refresh lease's key: "%L" never ends an encoded key, and never starts one.
  static std::string side_key(std::string_view key) {
    if (key.size() + 2 <= 250) return std::string(key) + "%L";
    return "%L" + sha256_hex(key);
  }

 private:
  // The marker is ours, but nothing can guard the store: a plain set replaces it.
  static void won_unguarded(Lookup& l) {
    l.state = LookupState::won;
    l.has_copy = false;
    l.token = LeaseToken{0, true, {}};
  }

  void degrade() {
    if (!no_cas_.exchange(true) && policy_.on_degraded) policy_.on_degraded(no_cas_reason);
  }

  Exptime lease_exptime() const { return static_cast<Exptime>(policy_.lease_ttl.count()); }

  static void fail(Lookup& l, StoreStatus st, const char* op) { fail_lookup(l, st, op); }

  // A present item: refresh under a side lease, then cas against the CAS id read,
  // so an invalidation or put in between wins.
  void take_side_lease(std::string_view key, Lookup& l) {
    std::string side = side_key(key);
    StoreStatus st = store_->add(side, lease_token(), envelope::lease_flags(), lease_exptime());
    side_lease_taken(l, st, std::move(side));
  }

  // Sorts what a read found into the lookup states.
  void classify(std::string_view key, StoreStatus st, Lookup& l, std::int64_t now) {
    clear_lookup(l, now);
    if (st == StoreStatus::not_found) return;
    if (st != StoreStatus::ok) return fail(l, st, "get");
    // A meta client's placeholder (a load in progress): refreshed under a side
    // lease like an expired item, its CAS id guarding the store.
    if (policy_.envelope && is_placeholder(l.item)) {
      l.present = true;
      return;
    }
    if (Unreadable u = judge(policy_, key, l, now)) return unreadable(key, l, u);
    // A marker this process could not delete: nobody loads under it. Still there
    // when this delete fails too: the next caller tries again.
    if (l.state == LookupState::busy && orphans_.take(key, l.item.value)) {
      if (is_failure(store_->remove(key))) return orphans_.add(key, l.item.value);
      l.state = LookupState::absent;
      l.present = false;
    }
  }

  // Bytes nobody can read would fail every reader: delete them, then it is a miss.
  void unreadable(std::string_view key, Lookup& l, Unreadable u) {
    tell_unreadable(policy_, key, u);
    l.present = false;
    StoreStatus st = store_->remove(key);
    if (is_failure(st)) fail(l, st, "delete");
  }

  std::shared_ptr<Store> store_;
  LookupPolicy policy_;
  std::atomic<bool> no_cas_{false};  // found out: the server gives no CAS ids
  OrphanedLeases orphans_{policy_.lease_ttl, policy_.clock};
};

}  // namespace cacheaside::detail
