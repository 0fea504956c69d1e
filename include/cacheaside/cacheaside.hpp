// cacheaside: the cache-aside pattern over memcached in one object.
// Umbrella header of the core: the standard library and POSIX (the spool's files), no
// third-party library. MemcachedStore is in
// <cacheaside/libmemcached.hpp>, JSON/CBOR serializers in
// <cacheaside/json.hpp>.
#pragma once

#include "cache_aside.hpp"
#include "clock.hpp"
#include "envelope.hpp"
#include "error.hpp"
#include "invalidation_fanout.hpp"
#include "key.hpp"
#include "options.hpp"
#include "protocol.hpp"
#include "serializer.hpp"
#include "stats.hpp"
#include "store.hpp"
#include "version.hpp"
