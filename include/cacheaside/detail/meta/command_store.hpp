// Store's calls as meta commands on any MetaExecutor (internal): MetaStore's
// over its connections, and the simulation's over its simulated network.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../store.hpp"
#include "op.hpp"

namespace cacheaside::detail {

class MetaCommandStore : public Store, public MetaExecutor {
 public:
  StoreStatus get(std::string_view key, StoreItem& item) override {
    MetaOp op;
    op.key = key;
    op.item = &item;
    execute(&op, 1);
    return op.status;
  }

  StoreStatus get_multi(const std::vector<std::string>& keys, std::vector<StoreItem>& items,
                        std::vector<char>& found) override {
    items.resize(keys.size());
    found.assign(keys.size(), 0);
    if (keys.empty()) return StoreStatus::ok;
    std::vector<MetaOp> ops(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      ops[i].key = keys[i];
      ops[i].item = &items[i];
    }
    execute(ops.data(), ops.size());
    StoreStatus failure = StoreStatus::ok;
    bool any = false;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (ops[i].status == StoreStatus::ok) {
        found[i] = 1;
        any = true;
      } else if (ops[i].status == StoreStatus::not_found) {
        any = true;
      } else {
        failure = ops[i].status;
      }
    }
    // Partial answers (one server of several down) are still used.
    return any || failure == StoreStatus::ok ? StoreStatus::ok : failure;
  }

  StoreStatus set(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    return store(MetaCmd::set, key, value, flags, exptime, 0);
  }

  StoreStatus add(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime) override {
    return store(MetaCmd::add, key, value, flags, exptime, 0);
  }

  StoreStatus cas(std::string_view key, std::string_view value, std::uint32_t flags,
                  Exptime exptime, std::uint64_t cas_id) override {
    return store(MetaCmd::cas, key, value, flags, exptime, cas_id);
  }

  StoreStatus remove(std::string_view key) override {
    MetaOp op;
    op.cmd = MetaCmd::remove;
    op.key = key;
    execute(&op, 1);
    return op.status;
  }

  StoreStatus incr(std::string_view key, std::uint64_t delta, std::uint64_t initial,
                   Exptime exptime, std::uint64_t& value) override {
    MetaOp op;
    op.cmd = MetaCmd::incr;
    op.key = key;
    op.delta = delta;
    op.initial = initial;
    op.exptime = exptime;
    execute(&op, 1);
    if (op.status == StoreStatus::ok) value = op.number;
    return op.status;
  }

 private:
  StoreStatus store(MetaCmd cmd, std::string_view key, std::string_view value, std::uint32_t flags,
                    Exptime exptime, std::uint64_t cas_id) {
    MetaOp op;
    op.cmd = cmd;
    op.key = key;
    op.value = value;
    op.flags = flags;
    op.exptime = exptime;
    op.cas = cas_id;
    execute(&op, 1);
    return op.status;
  }
};

}  // namespace cacheaside::detail
