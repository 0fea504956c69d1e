// How a cache is set up from its Options (internal): the checks, the lookup
// protocol, the near cache and the pending table's settings.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "../clock.hpp"
#include "../envelope.hpp"
#include "../error.hpp"
#include "../key.hpp"
#include "../options.hpp"
#include "../protocol.hpp"
#include "../store.hpp"
#include "integrity/signer.hpp"
#include "invalidation/pending.hpp"
#include "lookup/classic_protocol.hpp"
#include "near/near.hpp"
#include "reporter.hpp"

namespace cacheaside::detail {

/// Signing keys that can be used, or Error.
inline void check_signing_keys(const Options& o) {
  if (o.signing_keys.empty()) return;
  if (o.format != Format::envelope)
    throw Error("cacheaside: signing_keys need Format::envelope (the tag lives in its header)");
  for (std::size_t i = 0; i < o.signing_keys.size(); ++i) {
    const SigningKey& k = o.signing_keys[i];
    bool printable =
        std::all_of(k.id.begin(), k.id.end(), [](char c) { return c > 0x20 && c < 0x7F; });
    if (k.id.empty() || k.id.size() > envelope::max_key_id || !printable)
      throw Error("cacheaside: a signing key id is 1-32 printable ASCII bytes");
    if (k.secret.size() < 32)
      throw Error("cacheaside: signing key '" + k.id + "': the secret must have at least 32 bytes");
    for (std::size_t j = 0; j < i; ++j)
      if (o.signing_keys[j].id == k.id)
        throw Error("cacheaside: signing key id '" + k.id + "' is listed twice");
  }
}

/// The options, or Error when they make no sense.
inline Options checked(Options o) {
  if (o.ttl.count() <= 0) throw Error("cacheaside: ttl must be positive");
  if (o.ttl_jitter < 0 || o.ttl_jitter >= 1)
    throw Error("cacheaside: ttl_jitter must be in [0, 1)");
  if (o.early_refresh_beta < 0) throw Error("cacheaside: early_refresh_beta must be >= 0");
  if (o.max_stale.count() < 0 || o.soft_timeout.count() < 0 || o.hard_timeout.count() < 0 ||
      o.near_ttl.count() < 0 || o.stale_on_invalidate.count() < 0)
    throw Error("cacheaside: durations must not be negative");
  if (o.near_ttl.count() > 0) {
    if (o.format != Format::envelope)
      throw Error("cacheaside: the near cache needs Format::envelope (it keeps the TTL)");
    if (o.near_capacity == 0 || o.near_sync.count() <= 0)
      throw Error("cacheaside: near_capacity and near_sync must be positive");
  }
  if (o.stale_on_invalidate.count() > 0 && (o.format != Format::envelope || !o.leases))
    throw Error("cacheaside: stale_on_invalidate needs Format::envelope and leases");
  check_signing_keys(o);
  return o;
}
/// How long an absence is cached (0: not at all).
inline std::chrono::milliseconds negative_ttl(const Options& o) {
  if (o.format == Format::raw) return std::chrono::milliseconds(0);
  if (o.negative_ttl) return *o.negative_ttl;
  return std::max<std::chrono::milliseconds>(o.ttl / 10, std::chrono::seconds(1));
}

// The near cache, if on. Its log in memcached is named after the cache's name
// and key prefix: processes that share those share the log.
template <class Value>
std::unique_ptr<Near<Value>> make_near(const Options& o, const std::shared_ptr<Store>& store,
                                       const std::shared_ptr<Clock>& clock, const Reporter& report,
                                       NearReading reading = NearReading::thread) {
  if (o.near_ttl.count() == 0) return nullptr;
  std::string base = encode_key("near_log:" + o.name + ":" + o.key_prefix, max_key_length - 16);
  return std::make_unique<Near<Value>>(o, store, std::move(base), clock, report, reading);
}

/// The pending table's share of the options.
inline PendingInvalidations::Settings pending_settings(const Options& o,
                                                       const std::string& group_key) {
  PendingInvalidations::Settings s;
  s.retry = o.invalidation_retry;
  s.max_keys = o.max_pending_invalidations;
  s.spool = o.invalidation_spool;
  s.group_key = group_key;
  return s;
}

/// The memcached key of a cache without a group: the key prefix and the key's
/// text, encoded.
inline void plain_cache_key(const Options& o, std::string_view text, std::string& out) {
  out.clear();
  if (o.key_prefix.empty()) return encode_key_to(text, out);
  std::string full;
  full.reserve(o.key_prefix.size() + text.size());
  full.append(o.key_prefix).append(text);
  encode_key_to(full, out);
}

/// The memcached key of the group's generation counter (empty: no group).
inline std::string group_counter_key(const Options& o) {
  return o.group.empty() ? "" : encode_key(o.group, max_key_length - 2) + "%G";
}

/// The memcached key of a cache with a group: prefix and text under generation gen.
inline void grouped_cache_key(const Options& o, std::string_view text, std::uint64_t gen,
                              std::string& out) {
  out.clear();
  std::string suffix = "%g" + std::to_string(gen);
  std::string full;
  full.reserve(o.key_prefix.size() + text.size());
  full.append(o.key_prefix).append(text);
  encode_key_to(full, out, max_key_length - suffix.size());
  out += suffix;
}

/// How a cache's lookups read items, from its options.
inline LookupPolicy lookup_policy(const Options& opt, std::uint8_t codec,
                                  std::shared_ptr<Clock> clock, const Reporter& report) {
  LookupPolicy policy;
  policy.envelope = opt.format == Format::envelope;
  policy.leases = opt.leases && policy.envelope;
  policy.codec = codec;
  policy.lease_ttl = opt.lease_ttl;
  policy.max_stale = opt.max_stale;
  policy.stale_on_invalidate = opt.stale_on_invalidate;
  policy.clock = std::move(clock);
  policy.on_unreadable = [&report](std::string_view key, const char* why) {
    report.decode_error(key, why);
  };
  policy.on_degraded = [&report](const char* why) { report.leases_degraded(why); };
  if (!opt.signing_keys.empty()) {
    auto signer = std::make_shared<const Signer>(opt.signing_keys);
    policy.verify = [signer](std::string_view key, std::uint32_t flags, std::string_view bytes,
                             const envelope::Entry& e) {
      return signer->verify(key, flags, bytes, e);
    };
    policy.on_forged = [&report](std::string_view key, const char* why) {
      report.integrity_failure(key, why);
    };
  }
  return policy;
}

/// The store's own lookup protocol (MetaStore), else the classic one over it.
inline std::unique_ptr<LookupProtocol> make_protocol(const std::shared_ptr<Store>& store,
                                                     const Options& opt, std::uint8_t codec,
                                                     std::shared_ptr<Clock> clock,
                                                     const Reporter& report) {
  if (!store) throw Error("cacheaside: store is null");
  LookupPolicy policy = lookup_policy(opt, codec, std::move(clock), report);
  if (auto* own = dynamic_cast<LookupProtocolSource*>(store.get()))
    return own->make_lookup_protocol(std::move(policy));
  if (opt.stale_on_invalidate.count() > 0)
    throw Error("cacheaside: stale_on_invalidate needs a store with the meta protocol (MetaStore)");
  return std::make_unique<ClassicProtocol>(store, std::move(policy));
}

}  // namespace cacheaside::detail
