// Early refresh (XFetch) of one hit, as a machine without I/O (internal): the
// caller that leads it reloads while the others keep hitting; if anything goes
// wrong the still-fresh value is served.
#pragma once

#include <utility>
#include <vector>

#include "../../protocol.hpp"
#include "../lookup/value_codec.hpp"
#include "context.hpp"
#include "coroutine.hpp"
#include "miss.hpp"

namespace cacheaside::detail {

template <class Key, class Value, class Serializer>
class RefreshFsm {
 public:
  using Ctx = ReadContext<Key, Value, Serializer>;
  using M = Miss<Key, Value>;
  using Act = Action<M>;

  explicit RefreshFsm(Ctx& c) : c_(c) {}

  /// m: a hit (done, its value the fresh one) picked for refresh.
  void start(M* m) {
    cur_ = m;
    coro_ = 0;
  }

  /// The next action; done once m's value is the reloaded one, or still the hit's.
  Act resume() {
    CACHEASIDE_CORO_BEGIN(coro_)
    led_ = c_.flights.try_lead(cur_->mkey);
    if (!led_) return Act();  // someone here is already loading it
    cur_->fl = std::move(*led_);
    cur_->done = false;
    proof_ = no_joiner;  // read before anyone joined
    one_.assign(1, cur_);
    CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::acquire, one_));
    if (cur_->look.state == LookupState::won) {
      c_.report.early_refresh(cur_->mkey);
      cur_->loaded_at = c_.flights.stamp();
      cur_->error = nullptr;
      CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::load, one_));
      if (cur_->error) {
        CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, one_));  // keep the fresh value
      } else if (!c_.codec.encode(cur_->mkey, cur_->loaded, cur_->load_us, encoded_)) {
        CACHEASIDE_CORO_YIELD(coro_, Act::on(Step::release, one_));
        cur_->value = std::move(cur_->loaded);
      } else {
        commits_.assign(1, CommitRequest());
        commits_[0].key = cur_->mkey;
        commits_[0].token = &cur_->look.token;
        commits_[0].bytes = encoded_.bytes;
        commits_[0].flags = encoded_.flags;
        commits_[0].exptime = encoded_.exptime;
        stamp_ = c_.flights.stamp();
        CACHEASIDE_CORO_YIELD(coro_, commit());
        proof_ = cur_->loaded_at;
        if (c_.report.write(cur_->mkey, commits_[0].status,
                            cur_->look.token.guarded() ? "cas" : "set") &&
            cur_->look.token.guarded())
          proof_ = stamp_;
        cur_->value = std::move(cur_->loaded);
      }
    } else if (cur_->look.state == LookupState::error) {
      c_.report.cache_error(cur_->mkey, cur_->look.status, cur_->look.op);
    }
    c_.finish(*cur_, cur_->value, false, proof_);
    CACHEASIDE_CORO_END(coro_)
    return Act();
  }

 private:
  Act commit() {
    Act a;
    a.step = Step::commit;
    a.commits = &commits_;
    return a;
  }

  Ctx& c_;
  int coro_ = 0;
  M* cur_ = nullptr;
  std::vector<M*> one_;
  std::optional<typename FlightTable<Value>::Joined> led_;
  Stamp proof_ = no_joiner, stamp_ = no_joiner;
  Encoded encoded_;
  std::vector<CommitRequest> commits_;
};

}  // namespace cacheaside::detail
