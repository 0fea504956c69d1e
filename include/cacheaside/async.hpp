// cacheaside: the asynchronous API over Boost.Asio (component async, target
// cacheaside::async): AsyncMetaStore, one multiplexed connection per server.
#pragma once

#include "async_meta_store.hpp"
