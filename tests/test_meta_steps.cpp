// The meta protocol's step machine and its lease bookkeeping driven by hand:
// each round is answered here, as memcached would, with no socket.
#include <cacheaside/detail/miss/meta_rounds.hpp>
#include <cacheaside/meta.hpp>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

using namespace cacheaside;
using detail::MetaCmd;
using detail::MetaOp;

namespace {

struct Lookups {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  detail::MetaLookups lk{policy()};

  LookupPolicy policy() {
    LookupPolicy p;
    p.clock = clock;
    return p;
  }
};

// Answers a get as memcached does for a placeholder (an empty item, flags 0):
// W (this caller's) or Z (another's).
void placeholder(MetaOp& op, std::uint64_t cas, bool won) {
  op.status = StoreStatus::ok;
  op.sent = true;
  op.item->value.clear();
  op.item->flags = 0;
  op.item->cas = cas;
  op.won = won;
  op.claimed = !won;
}

void unanswered(std::vector<MetaOp>& round, bool written) {
  for (MetaOp& op : round) {
    op.status = written ? StoreStatus::timeout : StoreStatus::unavailable;
    op.sent = written;
  }
}

}  // namespace

TEST_CASE("meta steps: a machine reused for every step starts each one clean",
          "[meta_steps][nostore]") {
  // A leader polling for a lease, as the asynchronous driver runs it: one machine.
  Lookups w;
  detail::MetaStepFsm step(w.lk);
  Lookup l;
  step.acquire({detail::MetaKeyLook{"k", &l}});  // absent: re-read with N
  std::vector<MetaOp>* r = step.next();
  REQUIRE((r && r->size() == 1 && (*r)[0].vivify > 0));
  placeholder((*r)[0], 5, false);  // another caller loads
  CHECK(step.next() == nullptr);
  CHECK(l.state == LookupState::busy);

  step.read({detail::MetaKeyLook{"k", &l}}, true);  // the poll
  r = step.next();
  REQUIRE((r && r->size() == 1));
  placeholder((*r)[0], 6, true);  // theirs went, this one is ours
  CHECK(step.next() == nullptr);
  REQUIRE(l.state == LookupState::won);

  // A won lookup needs nothing more: no round, the lease kept (the re-read of
  // the first acquire, left over, used to read the key again and be answered Z
  // on its own placeholder).
  step.acquire({detail::MetaKeyLook{"k", &l}});
  CHECK(step.next() == nullptr);
  CHECK(l.state == LookupState::won);
  CHECK(l.token.cas == 6);
  CHECK(l.token.marker);
}

TEST_CASE("meta steps: one machine runs a read machine's releases key by key",
          "[meta_steps][nostore]") {
  using M = detail::Miss<std::string, std::string>;
  Lookups w;
  detail::MetaRounds<M> rounds(w.lk);
  std::vector<M> ms;
  std::vector<M*> list;
  for (int i = 0; i < 2; ++i) ms.emplace_back("k" + std::to_string(i), "k" + std::to_string(i));
  for (int i = 0; i < 2; ++i) {
    ms[i].look.token.cas = 10 + i;
    ms[i].look.token.marker = true;
    list.push_back(&ms[i]);
  }
  auto a = detail::Action<M>::on(detail::Step::release, list);
  rounds.start(a);
  std::vector<std::string> deleted;
  while (std::vector<MetaOp>* r = rounds.next()) {
    REQUIRE(r->size() == 1);
    CHECK((*r)[0].cmd == MetaCmd::remove);
    deleted.push_back(std::string((*r)[0].key) + " C" + std::to_string((*r)[0].cas));
    (*r)[0].status = StoreStatus::ok;
  }
  CHECK(deleted == std::vector<std::string>{"k0 C10", "k1 C11"});
  CHECK_FALSE(ms[0].look.token.marker);
  CHECK_FALSE(ms[1].look.token.marker);
}

TEST_CASE("meta steps: an orphaned lease is matched only to the placeholder it took",
          "[meta_steps][nostore]") {
  Lookups w;
  detail::MetaStepFsm step(w.lk);
  Lookup l;
  auto lease_read = [&] {
    step.read({detail::MetaKeyLook{"k", &l}}, true);
    return step.next();
  };

  SECTION("a lease read never written leaves nothing behind") {
    unanswered(*lease_read(), false);
    CHECK(step.next() == nullptr);
    CHECK(w.lk.orphans().size() == 0);
  }

  SECTION("one written and unanswered: a newer placeholder may be ours, an older one is not") {
    placeholder((*lease_read())[0], 3, false);  // another caller's, read before
    CHECK(step.next() == nullptr);
    unanswered(*lease_read(), true);
    CHECK(step.next() == nullptr);
    CHECK(w.lk.orphans().size() == 1);

    placeholder((*lease_read())[0], 3, false);  // there before the read went out
    CHECK(step.next() == nullptr);
    CHECK((l.state == LookupState::busy && !l.doubtful));

    // Newer: ours or another's, nobody can tell. Not deleted (it may be live),
    // not waited for (it may be dead): the caller loads without storing.
    placeholder((*lease_read())[0], 8, false);
    CHECK(step.next() == nullptr);  // no md
    CHECK((l.state == LookupState::busy && l.doubtful));

    // A win proves every older placeholder gone; this one is live.
    placeholder((*lease_read())[0], 9, true);
    CHECK(step.next() == nullptr);
    REQUIRE(l.state == LookupState::won);
    placeholder((*lease_read())[0], 9, false);  // another caller here sees it: wait
    CHECK(step.next() == nullptr);
    CHECK((l.state == LookupState::busy && !l.doubtful));
  }

  SECTION("a release that failed: only the placeholder with its CAS id is deleted") {
    LeaseToken t;
    t.cas = 7;
    t.marker = true;
    step.release("k", t);
    unanswered(*step.next(), true);
    CHECK(step.next() == nullptr);
    REQUIRE(w.lk.orphans().size() == 1);
    // Another caller's placeholder (its CAS differs): waited for, not deleted.
    placeholder((*lease_read())[0], 9, false);
    CHECK(step.next() == nullptr);
    CHECK((l.state == LookupState::busy && !l.doubtful));

    placeholder((*lease_read())[0], 7, false);  // ours (a reply older than the one above)
    std::vector<MetaOp>* r = step.next();
    REQUIRE((r && r->size() == 1));
    CHECK(((*r)[0].cmd == MetaCmd::remove && (*r)[0].cas == 7));
  }
}
