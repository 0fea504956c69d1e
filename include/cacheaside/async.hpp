// cacheaside: the asynchronous API over Boost.Asio (component async, target
// cacheaside::async): AsyncCacheAside over AsyncMetaStore, one multiplexed
// connection per server, and the async loaders.
#pragma once

#include "async_cache_aside.hpp"
#include "async_invalidation_fanout.hpp"
#include "async_loader.hpp"
#include "async_meta_store.hpp"
