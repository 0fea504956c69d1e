// Sorting an item read back into lookup states, shared by the protocols
// (internal).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "../../envelope.hpp"
#include "../../protocol.hpp"

namespace cacheaside::detail {

/// Clears what a previous read left in l (keeps item).
inline void clear_lookup(Lookup& l, std::int64_t now) {
  l.present = l.has_copy = l.negative = l.claimed = l.doubtful = false;
  l.token = LeaseToken{};
  l.read_ms = now;
  l.expiry_ms = 0;
  l.load_us = 0;
  l.payload_offset = 0;
  l.state = LookupState::absent;
}

/// Marks l failed.
inline void fail_lookup(Lookup& l, StoreStatus st, const char* op) {
  l.state = LookupState::error;
  l.status = st;
  l.op = op;
  l.present = l.has_copy = false;
}

/// Why nobody can use an item (nullptr: it is usable); forged: refused by the
/// signing keys.
struct Unreadable {
  const char* why = nullptr;
  bool forged = false;
  explicit operator bool() const { return why != nullptr; }
};

/// Tells the policy's hook about an unreadable item.
inline void tell_unreadable(const LookupPolicy& policy, std::string_view key, Unreadable u) {
  const auto& hook = u.forged ? policy.on_forged : policy.on_unreadable;
  if (hook) hook(key, u.why);
}

/// Judges the item in l.item (present), stored under key: hit, stale, busy (a
/// lease marker), or absent (expired; still present, its CAS id guards a
/// refresh). Returns why the item is unreadable (nobody can use it: delete it).
inline Unreadable judge(const LookupPolicy& policy, std::string_view key, Lookup& l,
                        std::int64_t now) {
  l.present = true;
  envelope::Entry e = envelope::decode(l.item.value, l.item.flags);
  switch (e.kind) {
    case envelope::Kind::raw:
      if (policy.verify) return {"unsigned value (flags 0)", true};
      if (policy.envelope) return {"foreign value (flags 0)"};
      l.has_copy = true;
      l.state = LookupState::hit;
      return {};
    case envelope::Kind::lease:
      // With leases off a marker is overwritten like any expired item.
      l.state = policy.leases ? LookupState::busy : LookupState::absent;
      return {};
    case envelope::Kind::unknown:
      return {"unknown flags or header"};
    case envelope::Kind::negative:
    case envelope::Kind::value:
      break;
  }
  if (policy.verify) {
    if (!e.is_signed) return {"unsigned value", true};
    if (const char* why = policy.verify(key, l.item.flags, l.item.value, e)) return {why, true};
  } else if (e.is_signed) {
    return {"signed value (this cache has no signing_keys)"};
  }
  if (e.codec != policy.codec) return {"codec mismatch"};
  l.negative = e.kind == envelope::Kind::negative;
  l.expiry_ms = e.expiry_ms;
  l.load_us = e.load_us;
  l.payload_offset = e.payload_offset;
  if (now < e.expiry_ms) {
    l.has_copy = true;
    l.state = LookupState::hit;
  } else if (!l.negative && policy.max_stale.count() > 0 &&
             now < e.expiry_ms + policy.max_stale.count()) {
    l.has_copy = true;
    l.state = LookupState::stale;
  }  // else expired: absent, but present
  return {};
}

/// After `add`ing the side lease of a present item (a refresh): won, the store
/// failed, or someone else refreshes it.
inline void side_lease_taken(Lookup& l, StoreStatus st, std::string side_key) {
  if (st == StoreStatus::ok) {
    l.state = LookupState::won;
    l.token = LeaseToken{l.item.cas, false, std::move(side_key)};
  } else if (is_failure(st)) {
    fail_lookup(l, st, "add lease");
  } else if (l.state == LookupState::absent) {
    l.state = LookupState::busy;  // an expired item someone else refreshes
  }                               // else hit or stale: someone else refreshes; use the copy
}

/// What both protocols tell (once) when the server keeps no CAS ids.
inline constexpr const char* no_cas_reason =
    "the server gives no CAS ids (memcached -C): single-flight and plain sets";

/// An empty value with flags 0: memcached's own placeholder for a load in
/// progress (meta protocol `mg ... N`), which no envelope ever is.
inline bool is_placeholder(const StoreItem& item) { return item.value.empty() && item.flags == 0; }

}  // namespace cacheaside::detail
