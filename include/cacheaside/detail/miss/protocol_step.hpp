// A read machine's round trips done against a lookup protocol (internal): the
// part of any driver that talks to memcached, blocking.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../../protocol.hpp"
#include "miss.hpp"

namespace cacheaside::detail {

/// Does a lookup, acquire, release or commit; other steps are not its own.
template <class M>
void run_protocol_step(LookupProtocol& protocol, Action<M>& a) {
  switch (a.step) {
    case Step::lookup:
      if (a.ms->size() == 1) {
        M& m = *a.ms->front();
        return a.lease ? protocol.lookup(m.mkey, m.look) : protocol.read(m.mkey, m.look);
      } else {
        std::vector<std::string> keys;
        keys.reserve(a.ms->size());
        for (M* m : *a.ms) keys.push_back(m->mkey);
        std::vector<Lookup> looks;
        if (a.lease) {
          protocol.lookup_many(keys, looks);
        } else {
          protocol.read_many(keys, looks);
        }
        for (std::size_t i = 0; i < keys.size(); ++i) (*a.ms)[i]->look = std::move(looks[i]);
      }
      return;
    case Step::acquire:
      for (M* m : *a.ms) protocol.acquire(m->mkey, m->look);
      return;
    case Step::release:
      for (M* m : *a.ms) protocol.release(m->mkey, m->look.token);
      return;
    case Step::commit:
      if (a.commits->size() == 1) {
        CommitRequest& r = a.commits->front();
        r.status = protocol.commit(r.key, *r.token, r.bytes, r.flags, r.exptime);
      } else {
        protocol.commit_many(*a.commits);
      }
      return;
    default:
      return;
  }
}

}  // namespace cacheaside::detail
