// cacheaside: per-cache options (standard library only).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "clock.hpp"
#include "stats.hpp"

namespace cacheaside {

/// How values are laid out in memcached.
enum class Format {
  /// Header (logical expiry, load time) + payload; codec and kind in the flags.
  /// Needed for stale serving, early refresh, negative entries and leases.
  envelope,
  /// Only the serializer's bytes, flags 0: readable and writable by other clients.
  /// Negative caching and leases are off in this format (other clients could not
  /// tell a marker from a value).
  raw,
};

/// A key of signed values (Options::signing_keys).
struct SigningKey {
  /// Stored with each value it signs: 1-32 printable ASCII bytes, unique.
  std::string id;
  /// At least 32 bytes, random (e.g. 32 bytes from /dev/urandom); never stored.
  std::string secret;
};

/// Options of one `CacheAside`. A plain struct: set what you need, keep the rest.
struct Options {
  /// Name used in events and metrics ("user", "users").
  std::string name;
  /// Prepended to the key text:
  /// memcached key = encode(key_prefix + key_traits<Key>::to_string(k)).
  std::string key_prefix;
  /// Time a loaded value counts as fresh.
  std::chrono::milliseconds ttl{std::chrono::seconds(60)};
  /// How long "does not exist" is cached. Unset: ttl / 10, at least 1 s.
  /// Zero: not cached.
  std::optional<std::chrono::milliseconds> negative_ttl;
  /// Each TTL is multiplied by a random factor in [1 - jitter, 1 + jitter].
  double ttl_jitter = 0.1;
  /// Stored-value layout (see docs/wire-format.md).
  Format format = Format::envelope;

  /// Coalesce concurrent loads of one key inside this process.
  bool single_flight = true;
  /// Stale-set prevention, cross-process stampede protection and the
  /// read-after-invalidate guarantee (envelope format only).
  bool leases = true;
  /// Lifetime of a lease marker: a crashed holder blocks others at most this
  /// long.
  std::chrono::seconds lease_ttl{3};
  /// How long a caller waits for another process's lease holder before loading
  /// itself (without storing the result).
  std::chrono::milliseconds lease_wait{1000};
  /// Stale-while-revalidate on invalidation (needs a store with the meta
  /// protocol, MetaStore, and leases): invalidate marks the entry stale for this
  /// long instead of deleting it; the next reader anywhere reloads it while the
  /// others keep getting the previous value, for at most this long. 0 = off:
  /// after invalidate returns, nobody gets the previous value.
  std::chrono::seconds stale_on_invalidate{0};

  /// Fail-safe: keep items this long past their TTL and serve them when the loader
  /// fails or is slow. 0 = off (the memcached TTL is the TTL).
  std::chrono::milliseconds max_stale{0};
  /// After a failed load served stale, the loader is not retried for this key for
  /// this long.
  std::chrono::milliseconds fail_safe_throttle{std::chrono::seconds(1)};
  /// Past this, a caller gets the stale copy (if any) while the load goes on in the
  /// background. 0 = wait for the loader.
  std::chrono::milliseconds soft_timeout{0};
  /// Past this, a caller gets the stale copy, or `TimeoutError`. 0 = no limit.
  std::chrono::milliseconds hard_timeout{0};

  /// XFetch early refresh: a hit refreshes early when
  /// now - load_time * beta * ln(rand()) >= expiry. 0 = off.
  double early_refresh_beta = 1.0;

  /// Group for `invalidate_all()`: a generation counter kept in memcached under this
  /// name and folded into every key. Empty (default): no group, no extra round trip.
  std::string group;
  /// Cache the group generation in this process for this long (saves the extra round
  /// trip; other processes' `invalidate_all` is then seen up to this late).
  /// 0 = read it every time.
  std::chrono::milliseconds group_cache{0};

  /// Values whose encoded size exceeds this are returned but not cached (memcached's
  /// item limit is 1 MiB by default, including key and overhead).
  std::size_t max_value_bytes = 1024 * 1024 - 512;

  /// Near cache: hot values kept decoded in this process for at most this long
  /// (and never past their memcached TTL). 0 (default): off. Every process that
  /// writes these keys must have it on: its writes feed the invalidation log
  /// the others read.
  std::chrono::milliseconds near_ttl{0};
  /// Bound of the near cache, in entries (segmented LRU: a scan does not push
  /// out keys read more than once).
  std::size_t near_capacity = 10000;
  /// The staleness bound between processes: a near entry is served only while
  /// this process read the invalidation log in memcached within the last
  /// near_sync (read every near_sync / 2). A write here is seen here at once.
  std::chrono::milliseconds near_sync{100};

  /// An invalidation (invalidate*, a failed put, invalidate_all) the store does
  /// not confirm is kept and retried in the background until it does; until
  /// then reads of that key in this process call the loader and store nothing.
  /// The longest wait between two retries (they start at 1/8 of it and double).
  std::chrono::milliseconds invalidation_retry{250};
  /// Bound of the pending table. Past it, with a group the cache invalidates
  /// everything with one pending group bump; without one the newest key is
  /// dropped (counted in `invalidations_dropped`, with an event).
  std::size_t max_pending_invalidations = 10000;
  /// A file that keeps pending invalidations across a crash: each is appended
  /// (and synced) before the call returns, and the next cache that opens the
  /// file retries them. One cache per file. Empty (default): in memory only.
  std::string invalidation_spool;

  /// Signed values (opt-in; Format::envelope). The first key signs what this
  /// cache stores, every key verifies what it reads, so a new key goes first and
  /// the old one stays listed until its values have expired. A value that fails
  /// (no tag, a wrong tag, an unknown key id, bytes copied from another key, an
  /// unsigned value) is refused, counted in `integrity_failures`, deleted and
  /// loaded from the source. Empty (default): unsigned values, and signed ones
  /// are unreadable here (see docs/wire-format.md).
  std::vector<SigningKey> signing_keys;

  /// Called synchronously for every event, in the calling thread (the retries of
  /// pending invalidations report from a background thread); keep it cheap.
  /// It must not throw, and must not call back into the same cache.
  std::function<void(const Event&)> on_event;

  /// What TTLs, the fail-safe throttle, the group cache, XFetch and lease waits
  /// measure time with. Null: the system clocks. Loader timeouts
  /// (soft/hard_timeout) always wait in real time.
  std::shared_ptr<Clock> clock;
};

}  // namespace cacheaside
