// The invalidation machine driven by hand: each store answer is an event.
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/detail/invalidation/invalidate_fsm.hpp>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace cacheaside;
using detail::WriteStep;

namespace {

using InvFsm = detail::InvalidateFsm<std::string>;

struct InvWorld {
  Options opt;
  ManualClock clock;
  detail::Reporter report{"inv", nullptr};
  detail::PendingInvalidations pending{
      {std::chrono::hours(1), 100, "", "g%G", nullptr},
      [](auto, const std::string&) { return StoreStatus::unavailable; },
      report};
  detail::MissTables<std::string> tables{opt, clock};
  detail::WriteContext<std::string> ctx{report,         pending,         nullptr,
                                        tables.flights, tables.throttle, "g%G"};
};

// Runs fsm, answering each step from `answers` (ok once they run out); returns the steps.
std::vector<WriteStep> run_inv(InvFsm& fsm, std::vector<StoreStatus> answers) {
  std::vector<WriteStep> steps;
  StoreStatus st = StoreStatus::ok;
  for (auto a = fsm.resume(st); a.step != WriteStep::done; a = fsm.resume(st)) {
    steps.push_back(a.step);
    st = answers.empty() ? StoreStatus::ok : answers.front();
    if (!answers.empty()) answers.erase(answers.begin());
  }
  return steps;
}

}  // namespace

TEST_CASE("invalidate fsm: a delete the store confirms is all, without a near cache",
          "[fsm][nostore]") {
  InvWorld w;
  InvFsm f(w.ctx, InvFsm::Kind::remove, "k");
  CHECK(run_inv(f, {StoreStatus::not_found}) == std::vector<WriteStep>{WriteStep::remove});
  CHECK(f.ok());
  CHECK(w.pending.size() == 0);
}

TEST_CASE("invalidate fsm: a delete the store does not confirm is pending", "[fsm][nostore]") {
  InvWorld w;
  InvFsm f(w.ctx, InvFsm::Kind::remove, "k");
  CHECK(run_inv(f, {StoreStatus::timeout}) == std::vector<WriteStep>{WriteStep::remove});
  CHECK_FALSE(f.ok());
  CHECK(w.pending.holds("k"));
  CHECK(w.report.stats.snapshot().cache_errors == 1);
  // A later delete that succeeds confirms it: its ticket is newer.
  InvFsm again(w.ctx, InvFsm::Kind::remove, "k");
  run_inv(again, {StoreStatus::ok});
  CHECK_FALSE(w.pending.holds("k"));
}

TEST_CASE("invalidate fsm: put stores, or deletes when the store refuses", "[fsm][nostore]") {
  InvWorld w;
  detail::Encoded e;
  e.bytes = "v";
  InvFsm stored(w.ctx, InvFsm::Kind::put, "k", &e);
  CHECK(run_inv(stored, {StoreStatus::ok}) == std::vector<WriteStep>{WriteStep::store});
  CHECK(stored.ok());
  InvFsm refused(w.ctx, InvFsm::Kind::put, "k", &e);
  CHECK(run_inv(refused, {StoreStatus::too_large, StoreStatus::ok}) ==
        std::vector<WriteStep>{WriteStep::store, WriteStep::remove});
  CHECK_FALSE(refused.ok());  // not stored, but the old value is gone
  CHECK(w.pending.size() == 0);
  InvFsm unencodable(w.ctx, InvFsm::Kind::put, "k", nullptr);
  CHECK(run_inv(unencodable, {}) == std::vector<WriteStep>{WriteStep::remove});
}

TEST_CASE("invalidate fsm: a group bump the store does not confirm is one pending bump",
          "[fsm][nostore]") {
  InvWorld w;
  InvFsm f(w.ctx, InvFsm::Kind::all, "g%G");
  CHECK(run_inv(f, {StoreStatus::unavailable}) == std::vector<WriteStep>{WriteStep::bump});
  CHECK(w.pending.holds("anything"));
  InvFsm retry(w.ctx, InvFsm::Kind::retry_bump, "g%G");
  CHECK(run_inv(retry, {StoreStatus::ok}) == std::vector<WriteStep>{WriteStep::bump});
  CHECK(retry.status() == StoreStatus::ok);  // the pending table erases it itself
}
