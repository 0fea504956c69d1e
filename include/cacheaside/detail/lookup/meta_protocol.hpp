// The lookup protocol over memcached's meta commands, blocking (internal): each
// step's rounds (MetaStepFsm) run on a MetaExecutor in the caller's thread.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../protocol.hpp"
#include "../meta/op.hpp"
#include "meta_steps.hpp"

namespace cacheaside::detail {

/// Runs a step's rounds, one execute() each.
inline void run_meta_step(MetaStepFsm& step, MetaExecutor& exec) {
  while (std::vector<MetaOp>* round = step.next()) exec.execute(round->data(), round->size());
}

/// The lease is memcached's own placeholder, taken by the read of a miss (see
/// meta_steps.hpp for the commands).
class MetaProtocol final : public LookupProtocol {
 public:
  MetaProtocol(MetaExecutor& exec, LookupPolicy policy)
      : exec_(exec), lookups_(std::move(policy)) {}

  void read(std::string_view key, Lookup& out) override { one(key, out, false); }
  void lookup(std::string_view key, Lookup& out) override { one(key, out, true); }
  void read_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) override {
    many(keys, out, false);
  }
  void lookup_many(const std::vector<std::string>& keys, std::vector<Lookup>& out) override {
    many(keys, out, true);
  }

  void acquire(std::string_view key, Lookup& l) override {
    MetaStepFsm step(lookups_);  // per call: callers of one cache run steps at once
    step.acquire({MetaKeyLook{key, &l}});
    run_meta_step(step, exec_);
  }

  StoreStatus commit(std::string_view key, LeaseToken& token, std::string_view bytes,
                     std::uint32_t flags, Exptime exptime) override {
    CommitRequest r;
    r.key = key;
    r.token = &token;
    r.bytes = bytes;
    r.flags = flags;
    r.exptime = exptime;
    MetaStepFsm step(lookups_);
    step.commit(&r, 1);
    run_meta_step(step, exec_);
    return r.status;
  }

  void commit_many(std::vector<CommitRequest>& requests) override {
    MetaStepFsm step(lookups_);
    step.commit(requests.data(), requests.size());
    run_meta_step(step, exec_);
  }

  void release(std::string_view key, LeaseToken& token) override {
    MetaStepFsm step(lookups_);
    step.release(key, token);
    run_meta_step(step, exec_);
  }

  StoreStatus store(std::string_view key, std::string_view bytes, std::uint32_t flags,
                    Exptime exptime) override {
    MetaStepFsm step(lookups_);
    step.store(key, bytes, flags, exptime);
    run_meta_step(step, exec_);
    return step.status();
  }

  StoreStatus remove(std::string_view key) override {
    MetaStepFsm step(lookups_);
    step.remove(key);
    run_meta_step(step, exec_);
    return step.status();
  }

  /// What every step of this cache shares (the async driver runs steps on it too).
  MetaLookups& lookups() { return lookups_; }

 private:
  void one(std::string_view key, Lookup& l, bool lease) {
    MetaStepFsm step(lookups_);
    step.read({MetaKeyLook{key, &l}}, lease);
    run_meta_step(step, exec_);
  }

  void many(const std::vector<std::string>& keys, std::vector<Lookup>& out, bool lease) {
    out.resize(keys.size());
    std::vector<MetaKeyLook> ks(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) ks[i] = MetaKeyLook{keys[i], &out[i]};
    MetaStepFsm step(lookups_);
    step.read(std::move(ks), lease);
    run_meta_step(step, exec_);
  }

  MetaExecutor& exec_;
  MetaLookups lookups_;
};

}  // namespace cacheaside::detail
