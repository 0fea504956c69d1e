// What one cache's meta lookups share (internal): the policy, the placeholders
// this process abandoned, and the one copy of what a meta reply means for a
// lookup (MetaLookups::classify). The steps that send the commands are in
// meta_steps.hpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../envelope.hpp"
#include "../../protocol.hpp"
#include "../meta/op.hpp"
#include "judge.hpp"
#include "orphans.hpp"

namespace cacheaside::detail {

/// What one cache's meta lookups share across calls: the policy, the
/// placeholders this process abandoned, whether the server keeps CAS ids.
class MetaLookups {
 public:
  explicit MetaLookups(LookupPolicy policy) : policy_(std::move(policy)) {
    if (!policy_.clock) policy_.clock = SystemClock::instance();
    if (!policy_.envelope) policy_.leases = false;
  }

  MetaLookups(const MetaLookups&) = delete;
  MetaLookups& operator=(const MetaLookups&) = delete;

  const LookupPolicy& policy() const { return policy_; }

  std::uint32_t lease_seconds() const {
    auto s = policy_.lease_ttl.count();
    return static_cast<std::uint32_t>(s < 1 ? 1 : s);
  }

  /// The highest CAS id read so far: a placeholder created by a request sent
  /// after now has a higher one (memcached counts them up).
  std::uint64_t cas_seen() const { return cas_seen_.load(std::memory_order_relaxed); }

  /// Sorts a reply into the lookup states. Returns the follow-up commands to run
  /// (in `extra`, room for 2): a win nobody asked for handed back, an unreadable
  /// item deleted. `floor`: cas_seen() before the read was sent.
  std::size_t classify(std::string_view key, const MetaOp& op, Lookup& l, std::int64_t now,
                       bool lease, std::uint64_t floor, MetaOp* extra) {
    clear_lookup(l, now);
    if (op.status == StoreStatus::not_found) return 0;
    if (op.status != StoreStatus::ok) {
      // Written but unanswered, the read may still create its placeholder (a frozen
      // server runs it on waking), and nobody would load under it. One never
      // written leaves nothing behind.
      if (lease && op.sent) orphans_.add_after(key, floor);
      fail_lookup(l, op.status, op.why ? op.why : lease ? "mg lease" : "mg");
      return 0;
    }
    l.present = true;
    for (auto seen = cas_seen(); l.item.cas > seen;)
      if (cas_seen_.compare_exchange_weak(seen, l.item.cas, std::memory_order_relaxed)) break;
    // Only an envelope cache can tell memcached's placeholder from a value: for a
    // raw one (no leases) an empty flags-0 item is an empty value.
    bool placeholder = policy_.envelope && is_placeholder(l.item);
    if (op.won) {
      // Memcached hands out a win only where no placeholder is: every one older
      // than this one is gone.
      if (placeholder && !op.stale) orphans_.forget_before(key, l.item.cas);
      LeaseToken t;
      t.cas = l.item.cas;
      t.marker = placeholder && !op.stale;
      t.revalidate = !t.marker;
      if (lease) {
        // c0: the server keeps no CAS ids (memcached -C). The placeholder still gives
        // the load to one caller; the store is a plain set.
        if (t.cas == 0 && !no_cas_.exchange(true) && policy_.on_degraded)
          policy_.on_degraded(no_cas_reason);
        l.state = LookupState::won;
        l.token = std::move(t);
        return 0;
      }
      // A plain read was handed the reload of a stale item: pass it on.
      std::size_t n = release_ops(key, t, extra);
      if (placeholder) return n;  // absent, present
      return n + classify_value(key, op, l, now, false, extra + n);
    }
    if (placeholder) {  // a load in progress elsewhere, or one that gave up
      // Ours, abandoned (the very placeholder): nobody loads under it. One that may
      // be ours (a lease read of ours went unanswered) is neither deleted (it may
      // be another caller's) nor waited for.
      auto m = op.claimed ? orphans_.match(key, {}, l.item.cas) : OrphanedLeases::Match::none;
      if (m == OrphanedLeases::Match::ours) {
        l.present = false;
        extra[0] = MetaOp();
        extra[0].cmd = MetaCmd::remove;
        extra[0].key = key;
        extra[0].cas = l.item.cas;
        return 1;
      }
      l.doubtful = m == OrphanedLeases::Match::maybe;
      l.claimed = op.claimed;
      if (op.claimed && policy_.leases) l.state = LookupState::busy;
      return 0;
    }
    return classify_value(key, op, l, now, op.claimed, extra);
  }

  /// The commands that give up what a token holds (room for 2).
  static std::size_t release_ops(std::string_view key, const LeaseToken& t, MetaOp* ops) {
    std::size_t n = 0;
    if (t.marker || t.revalidate) {
      // Only if unchanged: our placeholder goes, a stale item is handed on.
      MetaOp& op = ops[n++];
      op = MetaOp();
      op.cmd = MetaCmd::remove;
      op.key = key;
      op.cas = t.cas;
      op.invalidate = t.revalidate;
    }
    if (!t.side_key.empty()) {
      MetaOp& op = ops[n++];
      op = MetaOp();
      op.cmd = MetaCmd::remove;
      op.key = t.side_key;
    }
    return n;
  }

  /// After follow-up commands ran: the placeholders they failed to give back are
  /// remembered, so a later read of ours deletes them.
  void followed_up(const std::vector<MetaOp>& ops) {
    for (const MetaOp& op : ops)
      if (op.cmd == MetaCmd::remove && op.cas != 0 && !op.invalidate && is_failure(op.status))
        orphans_.add_cas(op.key, op.cas);
  }

  /// The placeholders this process abandoned (tests look).
  OrphanedLeases& orphans() { return orphans_; }

 private:
  std::size_t classify_value(std::string_view key, const MetaOp& op, Lookup& l, std::int64_t now,
                             bool claimed, MetaOp* extra) {
    if (Unreadable u = judge(policy_, key, l, now)) {
      tell_unreadable(policy_, key, u);
      l.present = false;
      l.state = LookupState::absent;
      extra[0] = MetaOp();
      extra[0].cmd = MetaCmd::remove;
      extra[0].key = key;
      return 1;  // nobody can read it: delete it, then it is a miss
    }
    if (!op.stale) return 0;
    // Invalidated (md I): the old value is served only to a cache that opted in.
    l.claimed = claimed;
    bool servable = policy_.stale_on_invalidate.count() > 0 && l.has_copy && !l.negative;
    if (servable) {
      l.state = LookupState::stale;
    } else {
      l.has_copy = false;
      l.state = claimed && policy_.leases ? LookupState::busy : LookupState::absent;
    }
    return 0;
  }

  LookupPolicy policy_;
  std::atomic<bool> no_cas_{false};  // told once
  std::atomic<std::uint64_t> cas_seen_{0};
  OrphanedLeases orphans_{policy_.lease_ttl, policy_.clock};
};

}  // namespace cacheaside::detail
