// Which server a key lives on (internal): libmemcached's ketama continuum, so
// MetaStore and MemcachedStore put a key on the same server of a cluster.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../error.hpp"
#include "config.hpp"

namespace cacheaside::detail {

class MetaRing {
 public:
  /// The servers in ring order (for one server, as configured). Throws Error if
  /// libmemcached rejects them.
  explicit MetaRing(const std::vector<MetaServerAddress>& servers) {
    if (servers.size() <= 1) {
      servers_ = servers;
      return;
    }
    std::string spec = "--DISTRIBUTION=consistent";
    for (const auto& s : servers) spec += " --SERVER=" + s.spec;
    ketama_ = memcached(spec.data(), spec.size());
    if (!ketama_ || memcached_server_count(ketama_) != servers.size()) {
      if (ketama_) memcached_free(ketama_);
      std::string names;
      for (const auto& s : servers) names += " " + s.spec;
      throw Error("cacheaside: libmemcached rejects the servers" + names);
    }
    for (std::uint32_t i = 0; i < servers.size(); ++i) {
      const memcached_instance_st* in = memcached_server_instance_by_position(ketama_, i);
      MetaServerAddress a;
      a.host = memcached_server_name(in);
      a.port = static_cast<std::uint16_t>(memcached_server_port(in));
      servers_.push_back(a);
    }
  }

  MetaRing(const MetaRing&) = delete;
  MetaRing& operator=(const MetaRing&) = delete;
  ~MetaRing() {
    if (ketama_) memcached_free(ketama_);
  }

  const std::vector<MetaServerAddress>& servers() const { return servers_; }

  std::size_t index_of(std::string_view key) const {
    if (!ketama_) return 0;
    std::uint32_t i = memcached_generate_hash(ketama_, key.data(), key.size());
    return i < servers_.size() ? i : 0;
  }

 private:
  std::vector<MetaServerAddress> servers_;
  memcached_st* ketama_ = nullptr;  // several servers: the continuum (read only)
};

}  // namespace cacheaside::detail
