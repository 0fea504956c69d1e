// A read machine's protocol steps as rounds of meta commands (internal): the
// part of a driver that talks to memcached, without I/O. The asynchronous driver
// sends each round on AsyncMetaStore; the simulation runs the same rounds, so it
// checks what that driver does, one step machine reused for every step.
#pragma once

#include <cstddef>
#include <vector>

#include "../lookup/meta_steps.hpp"
#include "../meta/op.hpp"
#include "miss.hpp"

namespace cacheaside::detail {

/// Turns lookup, acquire, release and commit actions into rounds: start(a), then
/// run every round next() returns until it returns null. a's lists stay the
/// machine's, unchanged until it resumes.
template <class M>
class MetaRounds {
 public:
  explicit MetaRounds(MetaLookups& lookups) : step_(lookups) {}

  MetaRounds(const MetaRounds&) = delete;
  MetaRounds& operator=(const MetaRounds&) = delete;

  void start(Action<M>& a) {
    releases_ = nullptr;
    release_next_ = 0;
    switch (a.step) {
      case Step::lookup:
      case Step::acquire: {
        std::vector<MetaKeyLook> keys;
        keys.reserve(a.ms->size());
        for (M* m : *a.ms) keys.push_back(MetaKeyLook{m->mkey, &m->look});
        if (a.step == Step::lookup) {
          step_.read(std::move(keys), a.lease);
        } else {
          step_.acquire(std::move(keys));
        }
        return;
      }
      case Step::commit:
        return step_.commit(a.commits->data(), a.commits->size());
      case Step::release:
        releases_ = a.ms;  // one release step per key, in turn: next() starts them
        return step_.reset();
      default:
        return step_.reset();  // not a protocol step: no round
    }
  }

  /// The next round to run, or null: the action is done.
  std::vector<MetaOp>* next() {
    for (;;) {
      if (std::vector<MetaOp>* round = step_.next()) return round;
      if (!releases_ || release_next_ >= releases_->size()) {
        releases_ = nullptr;
        return nullptr;
      }
      M* m = (*releases_)[release_next_++];
      step_.release(m->mkey, m->look.token);
    }
  }

 private:
  MetaStepFsm step_;
  std::vector<M*>* releases_ = nullptr;
  std::size_t release_next_ = 0;
};

}  // namespace cacheaside::detail
