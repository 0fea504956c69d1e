// The read machines driven by hand: each interleaving is a sequence of events,
// with no store, no thread and no clock of their own.
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/detail/miss/read_fsm.hpp>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

using namespace cacheaside;
using namespace std::chrono_literals;

namespace {

using Fsm = detail::ReadFsm<std::string, std::string, StringSerializer>;
using Ctx = detail::ReadContext<std::string, std::string, StringSerializer>;
using M = detail::Miss<std::string, std::string>;
using detail::Step;

// One cache's tables, with nothing behind them.
struct World {
  explicit World(Options o = {}) : opt(std::move(o)) {}
  Options opt;
  ManualClock clock;
  detail::Reporter report{"fsm", nullptr};
  detail::ValueCodec<std::string, StringSerializer> codec{StringSerializer(), opt, 1s, clock,
                                                          report};
  detail::PendingInvalidations pending{
      {}, [](auto, const std::string&) { return StoreStatus::ok; }, report};
  detail::MissTables<std::string> tables{opt, clock};
  Ctx ctx{opt, report, codec, pending, nullptr, tables};

  Clock::time_point now() const { return clock.now(); }
};

// A read of one key, and the action it asks for.
struct Reader {
  Reader(World& w, const std::string& key, Fsm::Mode mode = Fsm::Mode::get)
      : w(w), fsm(w.ctx, mode, false, 1) {
    fsm.add(key, key, true);
    next();
  }
  World& w;
  Fsm fsm;
  detail::Action<M> act;
  Step next() {
    act = fsm.resume(w.now());
    return act.step;
  }
  M& unit() { return fsm.units().front(); }
  // The action's one key.
  M& key() { return *act.ms->front(); }
};

void won(Lookup& l, std::uint64_t cas) {
  l.reset();
  l.state = LookupState::won;
  l.token.cas = cas;
  l.token.marker = true;
}

}  // namespace

TEST_CASE("fsm: a cold miss looks up, loads, stores under its lease, and is done",
          "[fsm][nostore]") {
  World w;
  Reader r(w, "k");
  REQUIRE(r.act.step == Step::lookup);
  CHECK(r.act.lease);
  won(r.key().look, 7);                // the lookup took the lease (meta: mg ... N)
  REQUIRE(r.next() == Step::acquire);  // a no-op for a lookup that won
  REQUIRE(r.next() == Step::load);
  r.key().loaded = "v";
  REQUIRE(r.next() == Step::commit);
  REQUIRE(r.act.commits->size() == 1);
  CHECK(r.act.commits->front().token->cas == 7);
  r.act.commits->front().status = StoreStatus::ok;
  REQUIRE(r.next() == Step::done);
  CHECK_FALSE(r.act.error);
  CHECK(r.unit().value == "v");
  CHECK(w.ctx.flights.size() == 0);
  CHECK(w.report.stats.snapshot().misses == 1);
}

TEST_CASE("fsm: busy, busy, won: a lease loser polls with backoff, then loads", "[fsm][nostore]") {
  World w;
  Reader r(w, "k");
  r.key().look.state = LookupState::busy;
  REQUIRE(r.next() == Step::acquire);
  r.key().look.state = LookupState::busy;  // someone else holds it
  std::vector<Clock::time_point::duration> sleeps;
  for (int poll = 0; poll < 2; ++poll) {
    REQUIRE(r.next() == Step::sleep);
    sleeps.push_back(r.act.delay);
    w.clock.advance(r.act.delay);
    REQUIRE(r.next() == Step::lookup);
    CHECK(r.act.lease);
    r.key().look.state = LookupState::busy;
  }
  REQUIRE(r.next() == Step::sleep);
  sleeps.push_back(r.act.delay);
  w.clock.advance(r.act.delay);
  REQUIRE(r.next() == Step::lookup);
  won(r.key().look, 9);
  REQUIRE(r.next() == Step::acquire);
  REQUIRE(r.next() == Step::load);
  r.key().loaded = "v";
  REQUIRE(r.next() == Step::commit);
  r.act.commits->front().status = StoreStatus::ok;
  REQUIRE(r.next() == Step::done);
  CHECK(r.unit().value == "v");
  CHECK(sleeps == std::vector<Clock::time_point::duration>{2ms, 4ms, 8ms});
  CHECK(w.report.stats.snapshot().lease_waits == 1);
  CHECK(w.report.stats.snapshot().lease_timeouts == 0);
}

TEST_CASE("fsm: a lease held past lease_wait: load, store nothing", "[fsm][nostore]") {
  Options o;
  o.lease_wait = 10ms;
  World w(o);
  Reader r(w, "k");
  r.key().look.state = LookupState::busy;
  REQUIRE(r.next() == Step::acquire);
  r.key().look.state = LookupState::busy;
  while (r.next() == Step::sleep || r.act.step == Step::lookup) {
    if (r.act.step == Step::sleep) {
      CHECK(r.act.delay <= 10ms);
      w.clock.advance(r.act.delay);
    } else {
      r.key().look.state = LookupState::busy;
    }
  }
  REQUIRE(r.act.step == Step::load);
  r.key().loaded = "v";
  REQUIRE(r.next() == Step::done);  // no commit: the lease is another's
  CHECK(r.unit().value == "v");
  CHECK(w.report.stats.snapshot().lease_timeouts == 1);
}

TEST_CASE("fsm: a follower that joined before the guarded store takes its result",
          "[fsm][nostore]") {
  World w;
  Reader a(w, "k");
  won(a.key().look, 3);
  REQUIRE(a.next() == Step::acquire);
  REQUIRE(a.next() == Step::load);
  Reader b(w, "k");  // joins while a loads
  b.key().look.state = LookupState::absent;
  REQUIRE(b.next() == Step::await);
  a.key().loaded = "v";
  REQUIRE(a.next() == Step::commit);
  a.act.commits->front().status = StoreStatus::ok;
  REQUIRE(a.next() == Step::done);
  b.key().ready = true;
  REQUIRE(b.next() == Step::done);
  CHECK(b.unit().value == "v");
  CHECK(w.report.stats.snapshot().coalesced == 1);
}

TEST_CASE("fsm: a follower that joined after the guarded store began looks again",
          "[fsm][nostore]") {
  World w;
  Reader a(w, "k");
  won(a.key().look, 3);
  REQUIRE(a.next() == Step::acquire);
  REQUIRE(a.next() == Step::load);
  a.key().loaded = "old";
  REQUIRE(a.next() == Step::commit);  // its proof is stamped now
  Reader b(w, "k");                   // begins after: an invalidation may lie between
  b.key().look.state = LookupState::absent;
  REQUIRE(b.next() == Step::await);
  a.act.commits->front().status = StoreStatus::ok;
  REQUIRE(a.next() == Step::done);
  b.key().ready = true;
  REQUIRE(b.next() == Step::lookup);  // not a's result: its own read
  CHECK_FALSE(b.act.lease);
  CHECK(b.act.ms->front()->mkey == "k");
}

TEST_CASE("fsm: a refused store serves the value, proved only by its load", "[fsm][nostore]") {
  World w;
  Reader a(w, "k");
  won(a.key().look, 3);
  REQUIRE(a.next() == Step::acquire);
  Reader b(w, "k");  // joined before the load began: its result is current for b
  b.key().look.state = LookupState::absent;
  REQUIRE(b.next() == Step::await);
  REQUIRE(a.next() == Step::load);
  Reader c(w, "k");  // joined after the load began
  c.key().look.state = LookupState::absent;
  REQUIRE(c.next() == Step::await);
  a.key().loaded = "v";
  REQUIRE(a.next() == Step::commit);
  a.act.commits->front().status = StoreStatus::exists;  // an invalidation came between
  REQUIRE(a.next() == Step::done);
  CHECK(a.unit().value == "v");
  CHECK(w.report.stats.snapshot().stale_sets_prevented == 1);
  b.key().ready = true;
  REQUIRE(b.next() == Step::done);
  CHECK(b.unit().value == "v");
  c.key().ready = true;
  CHECK(c.next() == Step::lookup);
}

TEST_CASE("fsm: a batch loads and stores what it won before it waits for the rest",
          "[fsm][nostore]") {
  World w;
  Fsm fsm(w.ctx, Fsm::Mode::get, true, 2);
  fsm.add("mine", "mine", true);
  fsm.add("theirs", "theirs", true);
  auto act = fsm.resume(w.now());
  REQUIRE(act.step == Step::lookup);
  REQUIRE(act.ms->size() == 2);
  won((*act.ms)[0]->look, 5);
  (*act.ms)[1]->look.state = LookupState::busy;
  std::vector<Step> steps;
  for (act = fsm.resume(w.now()); act.step != Step::sleep; act = fsm.resume(w.now())) {
    steps.push_back(act.step);
    if (act.step == Step::load) {
      REQUIRE(act.ms->size() == 1);
      CHECK(act.ms->front()->mkey == "mine");
      act.ms->front()->loaded = "v";
    }
    if (act.step == Step::commit) act.commits->front().status = StoreStatus::ok;
    if (act.step == Step::acquire)
      for (M* m : *act.ms)
        if (m->mkey == "theirs") m->look.state = LookupState::busy;
    REQUIRE(steps.size() < 10);
  }
  CHECK(steps == std::vector<Step>{Step::acquire, Step::load, Step::commit});
  CHECK(fsm.units()[0].done);  // published before the wait
  CHECK(w.ctx.flights.size() == 1);
}

TEST_CASE("fsm: hard_timeout: the caller gets TimeoutError, the load goes on apart",
          "[fsm][nostore]") {
  Options o;
  o.hard_timeout = 50ms;
  World w(o);
  Reader r(w, "k");
  won(r.key().look, 4);
  REQUIRE(r.next() == Step::lead);
  auto lead = r.fsm.take_detached();
  REQUIRE(lead);
  REQUIRE(r.next() == Step::await);
  CHECK(r.act.timed);
  CHECK(r.act.deadline == w.now() + 50ms);
  r.key().ready = false;  // the deadline passed
  REQUIRE(r.next() == Step::done);
  REQUIRE(r.act.error);
  CHECK_THROWS_AS(std::rethrow_exception(r.act.error), TimeoutError);
  CHECK(w.report.stats.snapshot().load_timeouts == 1);
  // The lead, on its own copy, still loads and stores for whoever asks next.
  auto a = lead->fsm.resume(w.now());
  REQUIRE(a.step == Step::acquire);
  a = lead->fsm.resume(w.now());
  REQUIRE(a.step == Step::load);
  a.ms->front()->loaded = "v";
  a = lead->fsm.resume(w.now());
  REQUIRE(a.step == Step::commit);
  a.commits->front().status = StoreStatus::ok;
  CHECK(lead->fsm.resume(w.now()).step == Step::done);
  CHECK(w.ctx.flights.size() == 0);
}

TEST_CASE("fsm: an unknown group generation still loads once for all callers", "[fsm][nostore]") {
  World w;
  Fsm a(w.ctx, Fsm::Mode::get, false, 1);
  a.add("k", "k%g0", false);
  auto act = a.resume(w.now());
  REQUIRE(act.step == Step::load);  // nothing to look up, nothing to acquire
  Fsm b(w.ctx, Fsm::Mode::get, false, 1);
  b.add("k", "k%g0", false);
  auto bact = b.resume(w.now());
  REQUIRE(bact.step == Step::await);  // single-flight holds
  act.ms->front()->loaded = "v";
  REQUIRE(a.resume(w.now()).step == Step::done);  // stored nowhere
  CHECK(a.units().front().value == "v");
}

TEST_CASE("fsm: a pending invalidation holds the key out of the cache", "[fsm][nostore]") {
  Options o;
  World w(o);
  detail::Reporter report{"p", nullptr};
  detail::PendingInvalidations pending(
      {std::chrono::hours(1), 10, "", "", nullptr},
      [](auto, const std::string&) { return StoreStatus::unavailable; }, report);
  Ctx ctx(w.opt, w.report, w.codec, pending, nullptr, w.tables);
  pending.add(detail::PendingInvalidations::Op::remove, "k", StoreStatus::unavailable, "delete");
  Fsm peek(ctx, Fsm::Mode::peek, false, 1);
  peek.add("k", "k", true);
  CHECK(peek.resume(w.now()).step == Step::done);  // no read at all
  CHECK_FALSE(peek.units().front().value);
  Fsm get(ctx, Fsm::Mode::get, false, 1);
  get.add("k", "k", true);
  auto act = get.resume(w.now());
  REQUIRE(act.step == Step::load);  // straight to the loader
  act.ms->front()->loaded = "v";
  CHECK(get.resume(w.now()).step == Step::done);  // and nothing stored
}
