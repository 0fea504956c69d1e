// cacheaside: the lookup protocol below CacheAside (standard library only).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "clock.hpp"
#include "envelope.hpp"
#include "exptime.hpp"
#include "store.hpp"

namespace cacheaside {

/// What a lookup found for one key.
enum class LookupState {
  hit,     ///< usable: a fresh value or a fresh "does not exist"
  stale,   ///< past its TTL, within max_stale, and someone else refreshes it
  won,     ///< this caller may load and store the key (`token`); `item` may hold a stale copy
  busy,    ///< another caller holds the right to load it
  absent,  ///< nothing usable, no right taken (a plain read, or an expired item)
  error,   ///< the store failed: load without storing
};

/// The right to store one key, as the lookup that won it left it.
struct LeaseToken {
  std::uint64_t cas = 0;    ///< the store is guarded by this CAS id; 0: unguarded set
  bool marker = false;      ///< a lease marker sits under the key itself
  std::string side_key;     ///< a refresh lease to release
  bool revalidate = false;  ///< won over an item marked stale (meta): release hands it on
  /// True when a write to the key after the lease was taken refuses the store.
  bool guarded() const { return cas != 0; }
};

/// One key's lookup. `item` keeps the bytes as read; the envelope's fields are
/// decoded when `state` is hit, stale, or won over a stale copy (`has_copy`).
struct Lookup {
  LookupState state = LookupState::absent;  ///< what the read found
  StoreItem item;                           ///< the bytes, flags and CAS id as read
  bool present = false;                     ///< an item was there (its CAS id guards a refresh)
  bool has_copy = false;  ///< item holds a value or negative entry (decoded below)
  bool negative = false;  ///< the copy is a cached "does not exist"
  bool claimed = false;   ///< the server gave the right to load to another caller
  /// busy under a placeholder that may be one this process abandoned: load
  /// without storing rather than wait for it
  bool doubtful = false;
  std::int64_t expiry_ms = 0;            ///< logical expiry (unix ms); 0 in Format::raw
  std::int64_t read_ms = 0;              ///< when freshness was judged (unix ms)
  std::uint32_t load_us = 0;             ///< how long its load took
  std::size_t payload_offset = 0;        ///< where the serializer's bytes start in item.value
  LeaseToken token;                      ///< won: what commit() needs
  StoreStatus status = StoreStatus::ok;  ///< error: what the store said
  const char* op = "";                   ///< error: the operation that failed

  /// The serializer's bytes: item.value past the envelope header.
  std::string_view payload() const {
    return std::string_view(item.value).substr(std::min(payload_offset, item.value.size()));
  }
  /// Back to "nothing there" (keeps the value's buffer).
  void reset() {
    std::string buffer = std::move(item.value);
    buffer.clear();
    *this = Lookup();
    item.value = std::move(buffer);
  }
};

/// How a protocol reads items for one cache.
struct LookupPolicy {
  bool envelope = true;               ///< Format::envelope (false: raw bytes, flags 0)
  bool leases = true;                 ///< take leases (envelope only)
  std::uint8_t codec = 0;             ///< the serializer's codec id; other codecs are unreadable
  std::chrono::seconds lease_ttl{3};  ///< Options::lease_ttl
  std::chrono::milliseconds max_stale{0};  ///< Options::max_stale
  /// remove() marks the item stale for this long instead of deleting it, where
  /// the protocol can (0: delete).
  std::chrono::seconds stale_on_invalidate{0};
  std::shared_ptr<Clock> clock = SystemClock::instance();  ///< judges freshness
  /// Told about each item dropped as unreadable (foreign flags, other codec,
  /// bad header), with the reason.
  std::function<void(std::string_view key, const char* why)> on_unreadable;
  /// With Options::signing_keys: why a signed item (its memcached key, flags,
  /// bytes and what they decode to) is not genuine, or nullptr. Set, it also
  /// makes every unsigned value and negative entry unreadable.
  std::function<const char*(std::string_view key, std::uint32_t flags, std::string_view bytes,
                            const envelope::Entry& entry)>
      verify;
  /// Told about each item refused by verify, or unsigned while it is set, with
  /// the reason (instead of on_unreadable).
  std::function<void(std::string_view key, const char* why)> on_forged;
  /// Told once when leases turn out impossible (the server gives no CAS ids): the
  /// protocol then stores unguarded, like leases off.
  std::function<void(const char* why)> on_degraded;
};

/// One loaded value to store under the right its lookup won (commit_many).
struct CommitRequest {
  std::string_view key;                     ///< the memcached key
  LeaseToken* token = nullptr;              ///< the lookup's token; reset once used
  std::string_view bytes;                   ///< the envelope to store
  std::uint32_t flags = 0;                  ///< item flags (envelope bits)
  Exptime exptime = 0;                      ///< the item's physical expiry
  StoreStatus status = StoreStatus::error;  ///< out: as commit() returns it
};

/// The round trips of a cache-aside miss: read, take the right to load, store
/// the loaded bytes guarded by it. Works on bytes and CAS ids; one instance per
/// cache. Implementations never throw for I/O.
class LookupProtocol {
 public:
  virtual ~LookupProtocol() = default;
  /// Reads one key, taking no lease.
  virtual void read(std::string_view key, Lookup& out) = 0;
  /// Reads distinct keys in one round trip, taking no lease; out is resized.
  virtual void read_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) = 0;
  /// A read for a caller that loads the key on a miss: a protocol that can take
  /// the lease in the same round trip does (the lookup is then won or busy).
  virtual void lookup(std::string_view key, Lookup& out) { read(key, out); }
  /// lookup() for distinct keys, in one round trip where the protocol can.
  virtual void lookup_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) {
    read_many(keys, out);
  }
  /// After a read that found nothing usable (absent, stale) or a copy to
  /// refresh (hit): tries to take the right to load the key. Leaves `l` won,
  /// busy, hit, stale or error.
  virtual void acquire(std::string_view key, Lookup& l) = 0;
  /// Stores loaded bytes as the token allows and releases what it holds.
  /// `exists` or `not_found` on a guarded store: a write came first.
  virtual StoreStatus commit(std::string_view key, LeaseToken& token, std::string_view bytes,
                             std::uint32_t flags, Exptime exptime) = 0;
  /// commit() for several keys, pipelined where the protocol can.
  virtual void commit_many(std::vector<CommitRequest>& requests) {
    for (CommitRequest& r : requests)
      r.status = commit(r.key, *r.token, r.bytes, r.flags, r.exptime);
  }
  /// Gives up a right without storing.
  virtual void release(std::string_view key, LeaseToken& token) = 0;
  /// Stores unconditionally (a write-through).
  virtual StoreStatus store(std::string_view key, std::string_view bytes, std::uint32_t flags,
                            Exptime exptime) = 0;
  /// Deletes the key (value, stale copy, negative entry or lease marker).
  virtual StoreStatus remove(std::string_view key) = 0;
};

/// Implemented by a Store whose wire protocol has lookups of its own
/// (MetaStore): a CacheAside over it uses them instead of the classic ones
/// built from get/add/cas/delete.
class LookupProtocolSource {
 public:
  virtual ~LookupProtocolSource() = default;
  /// A protocol for one cache. It must not outlive this object.
  virtual std::unique_ptr<LookupProtocol> make_lookup_protocol(LookupPolicy policy) = 0;
};

}  // namespace cacheaside
