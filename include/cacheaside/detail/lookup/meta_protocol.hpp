// The lookup protocol over memcached's meta commands: the lease is memcached's
// own placeholder, taken by the read of a miss (internal).
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../envelope.hpp"
#include "../../protocol.hpp"
#include "../meta/op.hpp"
#include "../random.hpp"
#include "classic_protocol.hpp"
#include "judge.hpp"
#include "orphans.hpp"

namespace cacheaside::detail {

/// A cold miss costs `mg <key> v f c N<lease_ttl>` (a miss answers W: this
/// caller loads; or Z: another does) and `ms <key> C<cas>`, which fails if an
/// invalidation came in between. Batches pipeline both. A present item that
/// needs a refresh (expired, or picked for early refresh) takes the classic
/// side lease, so the two protocols can share keys.
class MetaProtocol final : public LookupProtocol {
 public:
  MetaProtocol(MetaExecutor& exec, LookupPolicy policy) : exec_(exec), policy_(std::move(policy)) {
    if (!policy_.clock) policy_.clock = SystemClock::instance();
    if (!policy_.envelope) policy_.leases = false;
  }

  void read(std::string_view key, Lookup& out) override { one(key, out, false); }
  void lookup(std::string_view key, Lookup& out) override { one(key, out, policy_.leases); }
  void read_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) override {
    many(keys, out, false);
  }
  void lookup_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) override {
    many(keys, out, policy_.leases);
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
    if (l.claimed) {  // the server gave the right to another caller
      if (l.state == LookupState::absent) l.state = LookupState::busy;
      return;
    }
    if (l.state == LookupState::absent && !l.present) {
      one(key, l, true);
      if (l.state != LookupState::absent || !l.present) return;
    }
    take_side_lease(key, l);
  }

  StoreStatus commit(std::string_view key, LeaseToken& token, std::string_view bytes,
                     std::uint32_t flags, Exptime exptime) override {
    CommitRequest r;
    r.key = key;
    r.token = &token;
    r.bytes = bytes;
    r.flags = flags;
    r.exptime = exptime;
    commit_all(&r, 1);
    return r.status;
  }

  void commit_many(std::vector<CommitRequest>& requests) override {
    commit_all(requests.data(), requests.size());
  }

  void release(std::string_view key, LeaseToken& token) override {
    MetaOp ops[2];
    follow_up(ops, release_ops(key, token, ops));
    token = LeaseToken{};
  }

  StoreStatus store(std::string_view key, std::string_view bytes, std::uint32_t flags,
                    Exptime exptime) override {
    MetaOp op;
    op.cmd = MetaCmd::set;
    op.key = key;
    op.value = bytes;
    op.flags = flags;
    op.exptime = exptime;
    exec_.execute(&op, 1);
    return op.status;
  }

  StoreStatus remove(std::string_view key) override {
    MetaOp op;
    op.cmd = MetaCmd::remove;
    op.key = key;
    if (policy_.stale_on_invalidate.count() > 0) {
      // Marked stale: one reader is handed the reload (W), the others keep the
      // old value (X Z) until it lands or the item expires.
      op.invalidate = true;
      op.exptime = static_cast<Exptime>(policy_.stale_on_invalidate.count());
    }
    exec_.execute(&op, 1);
    return op.status;
  }

 private:
  std::uint32_t lease_seconds() const {
    auto s = policy_.lease_ttl.count();
    return static_cast<std::uint32_t>(s < 1 ? 1 : s);
  }

  void one(std::string_view key, Lookup& l, bool lease) {
    MetaOp op;
    op.key = key;
    op.item = &l.item;
    op.vivify = lease ? lease_seconds() : 0;
    exec_.execute(&op, 1);
    MetaOp extra[2];
    follow_up(extra, classify(key, op, l, policy_.clock->unix_ms(), lease, extra));
  }

  void many(const std::vector<std::string>& keys, std::vector<Lookup>& out, bool lease) {
    out.resize(keys.size());
    std::vector<MetaOp> ops;  // per call: a user callback below may run another batch here
    ops.assign(keys.size(), MetaOp());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      ops[i].key = keys[i];
      ops[i].item = &out[i].item;
      ops[i].vivify = lease ? lease_seconds() : 0;
    }
    exec_.execute(ops.data(), ops.size());
    std::int64_t now = policy_.clock->unix_ms();
    std::vector<MetaOp> extra;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      MetaOp more[2];
      std::size_t n = classify(keys[i], ops[i], out[i], now, lease, more);
      for (std::size_t j = 0; j < n; ++j) extra.push_back(more[j]);
    }
    follow_up(extra.data(), extra.size());
  }

  // Sorts a reply into the lookup states. Returns the follow-up commands to run
  // (in `extra`): a win nobody asked for handed back, an unreadable item deleted.
  std::size_t classify(std::string_view key, const MetaOp& op, Lookup& l, std::int64_t now,
                       bool lease, MetaOp* extra) {
    clear_lookup(l, now);
    if (op.status == StoreStatus::not_found) return 0;
    if (op.status != StoreStatus::ok) {
      // Unanswered, the read may still create its placeholder (a frozen server runs
      // it on waking), and nobody would load under it.
      if (lease) orphans_.add(key);
      fail_lookup(l, op.status, lease ? "mg lease" : "mg");
      return 0;
    }
    l.present = true;
    // Only an envelope cache can tell memcached's placeholder from a value: for a
    // raw one (no leases) an empty flags-0 item is an empty value.
    bool placeholder = policy_.envelope && is_placeholder(l.item);
    if (op.won) {
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
      classify_value(key, op, l, now, false, extra + n);
      return n;
    }
    if (placeholder) {                         // a load in progress elsewhere, or one that gave up
      if (op.claimed && orphans_.take(key)) {  // ours, abandoned: nobody loads under it
        l.present = false;
        extra[0] = MetaOp();
        extra[0].cmd = MetaCmd::remove;
        extra[0].key = key;
        extra[0].cas = l.item.cas;
        return 1;
      }
      l.claimed = op.claimed;
      if (op.claimed && policy_.leases) l.state = LookupState::busy;
      return 0;
    }
    return classify_value(key, op, l, now, op.claimed, extra);
  }

  std::size_t classify_value(std::string_view key, const MetaOp& op, Lookup& l, std::int64_t now,
                             bool claimed, MetaOp* extra) {
    if (const char* why = judge(policy_, l, now)) {
      if (policy_.on_unreadable) policy_.on_unreadable(key, why);
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

  // The commands that give up what a token holds.
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

  // Stores every request in one pipeline (side leases released in it too), then
  // hands back the rights of those that failed.
  void commit_all(CommitRequest* rs, std::size_t n) {
    std::vector<MetaOp> ops;  // per call: a user callback below may run another batch here
    for (std::size_t i = 0; i < n; ++i) {
      CommitRequest& r = rs[i];
      MetaOp op;
      op.cmd = r.token->guarded() ? MetaCmd::cas : MetaCmd::set;
      op.key = r.key;
      op.value = r.bytes;
      op.flags = r.flags;
      op.exptime = r.exptime;
      op.cas = r.token->cas;
      ops.push_back(op);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (rs[i].token->side_key.empty()) continue;
      MetaOp op;
      op.cmd = MetaCmd::remove;
      op.key = rs[i].token->side_key;
      ops.push_back(op);
    }
    exec_.execute(ops.data(), ops.size());
    std::vector<MetaOp> extra;
    for (std::size_t i = 0; i < n; ++i) {
      CommitRequest& r = rs[i];
      r.status = ops[i].status;
      LeaseToken& t = *r.token;
      t.side_key.clear();
      // Stored, or refused because a write came first: nothing of ours is left.
      if (r.status == StoreStatus::ok || r.status == StoreStatus::exists ||
          r.status == StoreStatus::not_found)
        t.marker = t.revalidate = false;
      MetaOp more[2];
      std::size_t k = release_ops(r.key, t, more);
      for (std::size_t j = 0; j < k; ++j) extra.push_back(more[j]);
      t = LeaseToken{};
    }
    follow_up(extra.data(), extra.size());
  }

  // Runs the follow-up commands of a step (releases, wins handed back, deletes of
  // abandoned placeholders) and remembers the placeholders they failed to give back.
  void follow_up(MetaOp* ops, std::size_t n) {
    if (n == 0) return;  // none: no round trip
    exec_.execute(ops, n);
    for (std::size_t i = 0; i < n; ++i)
      if (ops[i].cmd == MetaCmd::remove && ops[i].cas != 0 && !ops[i].invalidate &&
          is_failure(ops[i].status))
        orphans_.add(ops[i].key);
  }

  void take_side_lease(std::string_view key, Lookup& l) {
    std::string side = ClassicProtocol::side_key(key);
    std::string token = lease_token();
    MetaOp op;
    op.cmd = MetaCmd::add;
    op.key = side;
    op.value = token;
    op.flags = envelope::lease_flags();
    op.exptime = lease_seconds();
    exec_.execute(&op, 1);
    side_lease_taken(l, op.status, std::move(side));
  }

  MetaExecutor& exec_;
  LookupPolicy policy_;
  std::atomic<bool> no_cas_{false};  // told once
  OrphanedLeases orphans_{policy_.lease_ttl, policy_.clock};
};

}  // namespace cacheaside::detail
