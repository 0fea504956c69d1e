// The meta protocol's lookups as rounds of commands, without I/O (internal): one
// protocol step (a read, an acquire, a commit, ...) is a machine that hands out
// rounds of meta commands and reads their replies. MetaProtocol runs the rounds
// on a blocking executor, the asynchronous cache on AsyncMetaStore: one copy of
// what the replies mean.
//
// A cold miss costs `mg <key> v f c N<lease_ttl>` (a miss answers W: this
// caller loads; or Z: another does) and `ms <key> C<cas>`, which fails if an
// invalidation came in between. Batches pipeline both. A present item that
// needs a refresh (expired, or picked for early refresh) takes the classic side
// lease, so the two protocols can share keys.
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
#include "../miss/coroutine.hpp"
#include "../random.hpp"
#include "classic_protocol.hpp"
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

  /// Sorts a reply into the lookup states. Returns the follow-up commands to run
  /// (in `extra`, room for 2): a win nobody asked for handed back, an unreadable
  /// item deleted.
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
      return n + classify_value(key, op, l, now, false, extra + n);
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
        orphans_.add(op.key);
  }

 private:
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

  LookupPolicy policy_;
  std::atomic<bool> no_cas_{false};  // told once
  OrphanedLeases orphans_{policy_.lease_ttl, policy_.clock};
};

/// One key and its lookup, as a step sees them.
struct MetaKeyLook {
  std::string_view key;
  Lookup* look = nullptr;
};

/// One protocol step as rounds: start it with one of the verbs, then call
/// next() until it returns null, running each round it returns (every op gets
/// a status) in between. The keys, lookups and requests it was given must stay
/// valid until then.
class MetaStepFsm {
 public:
  explicit MetaStepFsm(MetaLookups& lookups) : lk_(lookups) {}

  MetaStepFsm(const MetaStepFsm&) = delete;
  MetaStepFsm& operator=(const MetaStepFsm&) = delete;

  /// Reads distinct keys; with `lease` a miss takes memcached's placeholder.
  void read(std::vector<MetaKeyLook> keys, bool lease) {
    begin(Kind::read);
    keys_ = std::move(keys);
    lease_ = lease && lk_.policy().leases;
  }

  /// Tries to take the right to load each key (see LookupProtocol::acquire).
  void acquire(std::vector<MetaKeyLook> keys) {
    begin(Kind::acquire);
    keys_ = std::move(keys);
  }

  /// Stores each request as its token allows and releases what the token held.
  void commit(CommitRequest* requests, std::size_t n) {
    begin(Kind::commit);
    commits_ = requests;
    n_ = n;
  }

  /// Gives up a right without storing.
  void release(std::string_view key, LeaseToken& token) {
    begin(Kind::release);
    key_ = key;
    token_ = &token;
  }

  /// Stores unconditionally.
  void store(std::string_view key, std::string_view bytes, std::uint32_t flags, Exptime exptime) {
    begin(Kind::store);
    MetaOp op;
    op.cmd = MetaCmd::set;
    op.key = key;
    op.value = bytes;
    op.flags = flags;
    op.exptime = exptime;
    round_.push_back(op);
  }

  /// Deletes the key, or marks it stale where the policy says so.
  void remove(std::string_view key) {
    begin(Kind::remove);
    MetaOp op;
    op.cmd = MetaCmd::remove;
    op.key = key;
    if (lk_.policy().stale_on_invalidate.count() > 0) {
      // Marked stale: one reader is handed the reload (W), the others keep the
      // old value (X Z) until it lands or the item expires.
      op.invalidate = true;
      op.exptime = static_cast<Exptime>(lk_.policy().stale_on_invalidate.count());
    }
    round_.push_back(op);
  }

  /// store and remove, once done: what the server said.
  StoreStatus status() const { return round_.empty() ? StoreStatus::error : round_[0].status; }

// Yields a round of follow-up commands (none: no round trip) and notes those
// that failed to give a placeholder back.
#define CACHEASIDE_CORO_YIELD_ROUND(round)   \
  do {                                       \
    if (!(round)->empty()) {                 \
      CACHEASIDE_CORO_YIELD(coro_, &extra_); \
      lk_.followed_up(extra_);               \
    }                                        \
  } while (0)

  /// The next round to run, or null: the step is done.
  std::vector<MetaOp>* next() {
    CACHEASIDE_CORO_BEGIN(coro_)
    if (kind_ == Kind::store || kind_ == Kind::remove) {
      CACHEASIDE_CORO_YIELD(coro_, &round_);
    } else if (kind_ == Kind::read && !keys_.empty()) {
      CACHEASIDE_CORO_YIELD(coro_, reads(keys_));
      CACHEASIDE_CORO_YIELD_ROUND(classify_reads(keys_));
    } else if (kind_ == Kind::acquire) {
      sort_acquires();
      if (!reread_.empty()) {
        CACHEASIDE_CORO_YIELD(coro_, reads(reread_));
        CACHEASIDE_CORO_YIELD_ROUND(classify_reads(reread_));
        for (const MetaKeyLook& k : reread_)
          if (k.look->state == LookupState::absent && k.look->present) side_.push_back(k);
      }
      if (!side_.empty()) {
        CACHEASIDE_CORO_YIELD(coro_, side_leases());
        for (std::size_t i = 0; i < side_.size(); ++i)
          side_lease_taken(*side_[i].look, round_[i].status, std::move(side_keys_[i]));
      }
    } else if (kind_ == Kind::commit) {
      CACHEASIDE_CORO_YIELD(coro_, stores());
      CACHEASIDE_CORO_YIELD_ROUND(stored());
    } else if (kind_ == Kind::release) {
      extra_.resize(2);
      extra_.resize(MetaLookups::release_ops(key_, *token_, extra_.data()));
      CACHEASIDE_CORO_YIELD_ROUND(&extra_);
      *token_ = LeaseToken{};
    }
    CACHEASIDE_CORO_END(coro_)
    return nullptr;
  }

 private:
  enum class Kind { read, acquire, commit, release, store, remove };

  void begin(Kind k) {
    kind_ = k;
    coro_ = 0;
    round_.clear();
    extra_.clear();
  }

  std::vector<MetaOp>* reads(const std::vector<MetaKeyLook>& keys) {
    round_.assign(keys.size(), MetaOp());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      round_[i].key = keys[i].key;
      round_[i].item = &keys[i].look->item;
      round_[i].vivify = lease_ ? lk_.lease_seconds() : 0;
    }
    return &round_;
  }

  std::vector<MetaOp>* classify_reads(const std::vector<MetaKeyLook>& keys) {
    std::int64_t now = lk_.policy().clock->unix_ms();
    extra_.clear();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      MetaOp more[2];
      std::size_t n = lk_.classify(keys[i].key, round_[i], *keys[i].look, now, lease_, more);
      extra_.insert(extra_.end(), more, more + n);
    }
    return &extra_;
  }

  // Which keys need what: a read that takes the placeholder, a side lease, nothing.
  void sort_acquires() {
    lease_ = true;
    for (const MetaKeyLook& k : keys_) {
      Lookup& l = *k.look;
      if (l.state != LookupState::hit && l.state != LookupState::stale &&
          l.state != LookupState::absent)
        continue;
      if (!lk_.policy().leases) {  // anyone may store; nothing guards it
        l.state = LookupState::won;
        l.token = LeaseToken{};
        continue;
      }
      if (l.claimed) {  // the server gave the right to another caller
        if (l.state == LookupState::absent) l.state = LookupState::busy;
        continue;
      }
      (l.state == LookupState::absent && !l.present ? reread_ : side_).push_back(k);
    }
  }

  std::vector<MetaOp>* side_leases() {
    round_.assign(side_.size(), MetaOp());
    side_keys_.clear();
    side_keys_.reserve(side_.size());  // no reallocation: the ops point into them
    tokens_.clear();
    tokens_.reserve(side_.size());
    for (std::size_t i = 0; i < side_.size(); ++i) {
      side_keys_.push_back(ClassicProtocol::side_key(side_[i].key));
      tokens_.push_back(lease_token());
      MetaOp& op = round_[i];
      op.cmd = MetaCmd::add;
      op.key = side_keys_.back();
      op.value = tokens_.back();
      op.flags = envelope::lease_flags();
      op.exptime = lk_.lease_seconds();
    }
    return &round_;
  }

  // Every request in one round, side leases released in it too.
  std::vector<MetaOp>* stores() {
    round_.clear();
    for (std::size_t i = 0; i < n_; ++i) {
      CommitRequest& r = commits_[i];
      MetaOp op;
      op.cmd = r.token->guarded() ? MetaCmd::cas : MetaCmd::set;
      op.key = r.key;
      op.value = r.bytes;
      op.flags = r.flags;
      op.exptime = r.exptime;
      op.cas = r.token->cas;
      round_.push_back(op);
    }
    for (std::size_t i = 0; i < n_; ++i) {
      if (commits_[i].token->side_key.empty()) continue;
      MetaOp op;
      op.cmd = MetaCmd::remove;
      op.key = commits_[i].token->side_key;
      round_.push_back(op);
    }
    return &round_;
  }

  // The rights of the requests that failed, handed back.
  std::vector<MetaOp>* stored() {
    extra_.clear();
    for (std::size_t i = 0; i < n_; ++i) {
      CommitRequest& r = commits_[i];
      r.status = round_[i].status;
      LeaseToken& t = *r.token;
      t.side_key.clear();  // released above; the ops of this round no longer need it
      // Stored, or refused because a write came first: nothing of ours is left.
      if (r.status == StoreStatus::ok || r.status == StoreStatus::exists ||
          r.status == StoreStatus::not_found)
        t.marker = t.revalidate = false;
      MetaOp more[2];
      std::size_t k = MetaLookups::release_ops(r.key, t, more);
      extra_.insert(extra_.end(), more, more + k);
      t = LeaseToken{};
    }
    return &extra_;
  }

#undef CACHEASIDE_CORO_YIELD_ROUND

  MetaLookups& lk_;
  Kind kind_ = Kind::read;
  int coro_ = 0;
  bool lease_ = false;
  std::vector<MetaKeyLook> keys_, reread_, side_;
  std::vector<std::string> side_keys_, tokens_;
  CommitRequest* commits_ = nullptr;
  std::size_t n_ = 0;
  std::string_view key_;
  LeaseToken* token_ = nullptr;
  std::vector<MetaOp> round_, extra_;
};

}  // namespace cacheaside::detail
