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
#include "meta_lookups.hpp"

namespace cacheaside::detail {

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

  /// No step: next() returns null.
  void reset() { begin(Kind::read); }

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

  // Every step starts clean: a driver reuses one machine for all its steps, and
  // a re-read left from the last acquire would read its key again and take the
  // lease a second time (answered Z: the caller's own placeholder, seen as
  // another's).
  void begin(Kind k) {
    kind_ = k;
    coro_ = 0;
    lease_ = false;
    keys_.clear();
    reread_.clear();
    side_.clear();
    side_keys_.clear();
    tokens_.clear();
    commits_ = nullptr;
    n_ = 0;
    key_ = {};
    token_ = nullptr;
    round_.clear();
    extra_.clear();
  }

  std::vector<MetaOp>* reads(const std::vector<MetaKeyLook>& keys) {
    cas_floor_ = lk_.cas_seen();
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
      std::size_t n =
          lk_.classify(keys[i].key, round_[i], *keys[i].look, now, lease_, cas_floor_, more);
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
  std::uint64_t cas_floor_ = 0;  // MetaLookups::cas_seen() when the reads went out
  std::vector<MetaKeyLook> keys_, reread_, side_;
  std::vector<std::string> side_keys_, tokens_;
  CommitRequest* commits_ = nullptr;
  std::size_t n_ = 0;
  std::string_view key_;
  LeaseToken* token_ = nullptr;
  std::vector<MetaOp> round_, extra_;
};

}  // namespace cacheaside::detail
