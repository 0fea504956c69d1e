// Deterministic simulation of the cache's protocol: several processes, each with
// several callers, run the read and invalidation machines over one simulated
// memcached on a manual clock, spoken to by either protocol (classic: InMemoryStore's
// add/gets/cas/delete; meta: SimMeta's mg N, ms C, md I with whole-second expiry),
// through a simulated network that delays, loses requests, loses replies after the
// command was applied, and partitions a process. Some schedules put the keys in a group,
// some keep a near cache in every process (its log read by the scheduler every
// near_sync / 2), some restart memcached or make it evict. A seeded scheduler picks
// every delay and fault, so a schedule is replayed exactly from its seed.
//
// Checked for every schedule:
//   - no read returns a value older than a write whose invalidation returned before
//     the read began: in the writer's own process always, in every other process
//     when the schedule had no faults (with faults the README's bound applies);
//   - once the network heals and the retries have run, nothing is pending and
//     memcached holds no value older than the source (no invalidation lost);
//   - no caller waits past its bound; nothing is in flight at the end; no caller waits
//     out lease_wait behind a lease marker its own process let go (nobody loads under it);
//   - with a near cache, another process's old value is served at most near_sync after
//     the invalidation returned.
//
//   cacheaside_sim [schedules] [seconds]   default 100000 and 60
//   CACHEASIDE_SIM_SEED=<n>                replays schedule n with a trace
//   CACHEASIDE_SIM_MUTATION=<name>         (for showing that a check can fail: no-leases,
//                                           meta-ms-ignores-cas)
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/detail/invalidation/invalidate_fsm.hpp>
#include <cacheaside/detail/invalidation/invalidator.hpp>
#include <cacheaside/detail/invalidation/meta_write_rounds.hpp>
#include <cacheaside/detail/lookup/meta_protocol.hpp>
#include <cacheaside/detail/meta/command_store.hpp>
#include <cacheaside/detail/miss/meta_rounds.hpp>
#include <cacheaside/detail/miss/protocol_step.hpp>
#include <cacheaside/detail/miss/read_fsm.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>

using namespace cacheaside;
using namespace std::chrono_literals;
using detail::Step;
using detail::WriteStep;

namespace {

using Read = detail::ReadFsm<std::string, std::string, StringSerializer>;
using Ctx = detail::ReadContext<std::string, std::string, StringSerializer>;
using M = detail::Miss<std::string, std::string>;
using Inv = detail::InvalidateFsm<std::string>;
using Ms = std::chrono::milliseconds;

constexpr int n_keys = 2;

const char* state_name(LookupState s) {
  static const char* const names[] = {"hit", "stale", "won", "busy", "absent", "error"};
  return names[static_cast<int>(s)];
}

// One schedule's world.
struct Sim {
  explicit Sim(std::uint64_t seed, bool trace) : rng(seed), trace(trace) {
    detail::rng().seed(seed * 7919 + 1);  // lease tokens, jitter: from the seed too
  }

  std::mt19937_64 rng;
  bool trace;
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<InMemoryStore> memcached = std::make_shared<InMemoryStore>(1 << 20, clock);
  std::map<std::string, int> source;  // key -> version (the database)
  // Per key and version: when its write began, and when its put returned (a put
  // still running: max). The contract leaves two writers racing on one key to the
  // application: a put's value that lands after a later write's invalidation is
  // excused when that later write began before the put returned.
  std::map<std::string, std::map<int, Ms>> write_began, put_ended;
  // A lease wait may time out while the key keeps being written and leased anew
  // (the protocol is not fair), never while nobody makes progress on it: that is
  // holders waiting for each other.
  std::map<std::string, Ms> progress;  // key -> the last store, release or write
  bool any_fault = false;              // a request lost or a process cut off, so far
  Ms stale_window{-1};                 // stale_on_invalidate's bound on reads (-1: off)
  Ms near_window{-1};                  // near_sync, between processes (-1: no near cache)
  // Lease markers (by CAS id) and the process that took each. `let_go`: since when
  // none of its callers holds it (a reply lost, a release that failed): from then the
  // process knows nobody loads under it, and its own callers must not wait for it.
  struct Marker {
    int pid;
    Ms let_go{-1};
  };
  std::map<std::uint64_t, Marker> markers;
  std::function<std::uint64_t(const std::string&)> marker_at;  // under key now (0: none)
  void marker_taken(int pid, std::uint64_t cas) { markers[cas] = Marker{pid}; }
  // The caller whose round memcached runs now (null: no caller's), and whether a
  // caller other than it holds marker `cas` (it loads under it).
  const void* acting = nullptr;
  std::function<bool(std::uint64_t cas, const void* acting)> held_by_other;

  void progressed(const std::string& key) { progress[key] = now_ms(); }
  void waited_out(int id, const std::string& key, Ms waited) {
    auto m = markers.find(marker_at(key));
    if (m != markers.end() && m->second.pid == id && m->second.let_go >= Ms(0) &&
        m->second.let_go <= now_ms() - waited)
      fail("p" + std::to_string(id) + " waited out lease_wait on " + key +
           " behind a lease marker it had itself let go (nobody loads under it)");
    auto it = progress.find(key);
    if (any_fault) return;  // a holder cut off leaves its lease until lease_ttl
    if (it == progress.end() || it->second < now_ms() - waited)
      fail("p" + std::to_string(id) + " waited out lease_wait on " + key +
           " while no holder stored or gave it up (holders waiting for each other)");
  }
  bool excused(const std::string& key, const std::string& value) {
    if (value.empty() || value[0] != 'w') return false;
    int n = std::atoi(value.c_str() + 1);
    auto next = write_began[key].find(n + 1);
    if (next == write_began[key].end()) return false;
    auto end = put_ended[key].find(n);
    return end == put_ended[key].end() || next->second < end->second;
  }
  std::vector<std::string> log;
  std::string violation;

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  // A one-way network delay: mostly short, sometimes a slow packet.
  Ms hop() { return Ms(chance(0.1) ? uniform(5, 40) : uniform(0, 3)); }
  Ms now_ms() const {
    return std::chrono::duration_cast<Ms>(clock->now().time_since_epoch()) - 24h;
  }
  template <class... A>
  void note(const char* fmt, A... a) {
    if (!trace) return;
    char buf[256];
    std::snprintf(buf, sizeof buf, fmt, a...);
    char line[300];
    std::snprintf(line, sizeof line, "%6lld ms  %s", static_cast<long long>(now_ms().count()), buf);
    log.push_back(line);
  }
  void fail(const std::string& why) {
    if (violation.empty()) violation = why;
  }

  // Events, in time order (ties in the order they were scheduled).
  struct Event {
    Ms at;
    std::uint64_t seq;
    std::function<void()> fn;
    bool operator<(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  std::priority_queue<Event> events;
  std::uint64_t seq = 0;
  void at(Ms t, std::function<void()> fn) { events.push({t, seq++, std::move(fn)}); }
  void after(Ms d, std::function<void()> fn) { at(now_ms() + d, std::move(fn)); }
};

// The network between one process and memcached: a Store whose every call can be
// lost before or after memcached applied it, or fail for a partition.
class SimNet final : public Store {
 public:
  SimNet(Sim& s, int pid, std::shared_ptr<Store> inner, double loss)
      : loss(loss), s_(s), pid_(pid), inner_(std::move(inner)) {}
  double loss;  // the chance that a call is lost
  bool partitioned = false;
  bool faults = false;  // any fault so far

  StoreStatus get(std::string_view k, StoreItem& i) override {
    return go([&] { return inner_->get(k, i); });
  }
  StoreStatus get_multi(const std::vector<std::string>& k, std::vector<StoreItem>& i,
                        std::vector<char>& f) override {
    StoreStatus st = go([&] { return inner_->get_multi(k, i, f); });
    if (st != StoreStatus::ok) {
      i.assign(k.size(), StoreItem());
      f.assign(k.size(), 0);
    }
    return st;
  }
  StoreStatus set(std::string_view k, std::string_view v, std::uint32_t fl, Exptime e) override {
    return go([&] { return inner_->set(k, v, fl, e); });
  }
  StoreStatus add(std::string_view k, std::string_view v, std::uint32_t fl, Exptime e) override {
    return go([&] {
      StoreStatus st = inner_->add(k, v, fl, e);
      StoreItem i;
      if (st == StoreStatus::ok && (fl & envelope::lease_bit) &&
          inner_->get(k, i) == StoreStatus::ok)
        s_.marker_taken(pid_, i.cas);  // taken, whether or not the reply arrives
      return st;
    });
  }
  StoreStatus cas(std::string_view k, std::string_view v, std::uint32_t fl, Exptime e,
                  std::uint64_t c) override {
    return go([&] { return inner_->cas(k, v, fl, e, c); });
  }
  StoreStatus remove(std::string_view k) override {
    return go([&] { return inner_->remove(k); });
  }
  StoreStatus incr(std::string_view k, std::uint64_t d, std::uint64_t init, Exptime e,
                   std::uint64_t& v) override {
    return go([&] { return inner_->incr(k, d, init, e, v); });
  }

 private:
  template <class Fn>
  StoreStatus go(Fn fn) {
    if (partitioned) return s_.any_fault = true, StoreStatus::timeout;
    if (loss > 0 && s_.chance(loss)) {
      faults = s_.any_fault = true;
      if (s_.chance(0.5)) return StoreStatus::timeout;  // the request was lost
      fn();                                             // the reply was lost
      return StoreStatus::timeout;
    }
    return fn();
  }
  Sim& s_;
  int pid_;
  std::shared_ptr<Store> inner_;
};

// memcached's meta commands as memcached 1.6 runs them (proto_meta.c), on the
// simulated clock with memcached's whole-second expiry: `mg … N` creates a
// placeholder and hands out one win (W; later readers get Z), `md … I` marks the item
// stale, gives it a new CAS id and hands out a new win (W X), `ms … C` stores only
// over the CAS id it names, `ma … N J D` counts.
class SimMeta {
 public:
  explicit SimMeta(std::shared_ptr<ManualClock> clock) : clock_(std::move(clock)) {
    const char* m = std::getenv("CACHEASIDE_SIM_MUTATION");
    ignore_cas_ = m && std::string(m) == "meta-ms-ignores-cas";  // a server without the guard
  }

  void execute(detail::MetaOp& op) {
    using detail::MetaCmd;
    std::int64_t now = clock_->unix_ms() / 1000;
    auto it = items_.find(std::string(op.key));
    if (it != items_.end() && !live(it->second, now)) {
      items_.erase(it);
      it = items_.end();
    }
    auto expiry = [&](Exptime t) -> std::int64_t { return t == 0 ? 0 : now + t; };
    switch (op.cmd) {
      case MetaCmd::get: {
        bool created = false;
        if (it == items_.end()) {
          if (!op.vivify) {
            op.status = StoreStatus::not_found;
            return;
          }
          it = items_.emplace(std::string(op.key), Item{}).first;
          it->second.cas = ++cas_;
          it->second.exp = expiry(op.vivify);
          created = true;
        }
        Item& i = it->second;
        op.item->value = i.value;
        op.item->flags = i.flags;
        op.item->cas = i.cas;
        op.stale = i.stale;
        op.won = op.claimed = false;
        if (created || (i.stale && !i.token_sent)) {
          op.won = true;
          i.token_sent = true;
        } else if (i.token_sent) {
          op.claimed = true;
        }
        op.status = StoreStatus::ok;
        return;
      }
      case MetaCmd::set:
      case MetaCmd::add:
      case MetaCmd::cas: {
        if (op.cmd == MetaCmd::add && it != items_.end()) {
          op.status = StoreStatus::not_stored;
          return;
        }
        if (op.cmd == MetaCmd::cas) {
          if (it == items_.end()) {
            op.status = StoreStatus::not_found;
            return;
          }
          if (it->second.cas != op.cas && !ignore_cas_) {
            op.status = StoreStatus::exists;
            return;
          }
        }
        Item& i = items_[std::string(op.key)];
        i = Item{};
        i.value.assign(op.value.data(), op.value.size());
        i.flags = op.flags;
        i.cas = ++cas_;
        i.exp = expiry(op.exptime);
        op.status = StoreStatus::ok;
        return;
      }
      case MetaCmd::remove: {
        if (it == items_.end()) {
          op.status = StoreStatus::not_found;
          return;
        }
        if (op.cas && it->second.cas != op.cas) {
          op.status = StoreStatus::exists;
          return;
        }
        if (op.invalidate) {
          Item& i = it->second;
          i.stale = true;
          i.token_sent = false;
          i.cas = ++cas_;
          if (op.exptime) i.exp = expiry(op.exptime);
        } else {
          items_.erase(it);
        }
        op.status = StoreStatus::ok;
        return;
      }
      case MetaCmd::incr: {
        if (it == items_.end()) {
          Item& i = items_[std::string(op.key)];
          i.value = std::to_string(op.initial);
          i.cas = ++cas_;
          i.exp = expiry(op.exptime);
          op.number = op.initial;
        } else {
          op.number = std::strtoull(it->second.value.c_str(), nullptr, 10) + op.delta;
          it->second.value = std::to_string(op.number);
          it->second.cas = ++cas_;
        }
        op.status = StoreStatus::ok;
        return;
      }
    }
  }

  /// memcached restarted: everything is gone.
  void clear() { items_.clear(); }

  /// The CAS id of the placeholder (a won lease) under key (0: none).
  std::uint64_t placeholder_cas(const std::string& key) const {
    auto it = items_.find(key);
    if (it == items_.end()) return 0;
    const Item& i = it->second;
    bool placeholder = i.value.empty() && i.flags == 0 && !i.stale && i.token_sent;
    return placeholder && live(i, clock_->unix_ms() / 1000) ? i.cas : 0;
  }

 private:
  struct Item {
    std::string value;
    std::uint32_t flags = 0;
    std::uint64_t cas = 0;
    std::int64_t exp = 0;  // unix seconds; 0: never
    bool stale = false;
    bool token_sent = false;  // a win was handed out
  };
  static bool live(const Item& i, std::int64_t now) { return i.exp == 0 || now < i.exp; }
  std::shared_ptr<ManualClock> clock_;
  std::map<std::string, Item> items_;
  std::uint64_t cas_ = 0;
  bool ignore_cas_ = false;
};

// One process's network to the meta memcached: per batch (one write, one read), the
// whole batch may be lost before it reached memcached or after it was applied.
class SimMetaNet final : public detail::MetaCommandStore {
 public:
  SimMetaNet(Sim& s, int pid, SimMeta& server, double loss)
      : loss(loss), s_(s), pid_(pid), server_(server) {}
  double loss;
  bool partitioned = false;
  bool faults = false;

  void execute(detail::MetaOp* ops, std::size_t n) override {
    // Written (the request or its reply lost): timeout; a partition refuses the
    // connection, so nothing is written: unavailable.
    auto fail_all = [&](bool written = true) {
      for (std::size_t i = 0; i < n; ++i) {
        ops[i].status = written ? StoreStatus::timeout : StoreStatus::unavailable;
        ops[i].sent = written;
      }
    };
    if (partitioned) return s_.any_fault = true, fail_all(false);
    if (loss > 0 && s_.chance(loss)) {
      faults = s_.any_fault = true;
      if (s_.chance(0.5)) return lost("request", ops, n), fail_all();  // the request was lost
      for (std::size_t i = 0; i < n; ++i) run(ops[i]);
      return lost("reply", ops, n), fail_all();  // the replies were lost
    }
    for (std::size_t i = 0; i < n; ++i) run(ops[i]), ops[i].sent = true;
  }

 private:
  void lost(const char* what, const detail::MetaOp* ops, std::size_t n) {
    static const char* const cmds[] = {"mg", "ms", "add", "cas", "md", "ma"};
    for (std::size_t i = 0; i < n; ++i)
      s_.note("p%d %s lost: %s %s%s C%llu", pid_, what, cmds[static_cast<int>(ops[i].cmd)],
              std::string(ops[i].key).c_str(), ops[i].vivify ? " N" : "",
              static_cast<unsigned long long>(ops[i].cas));
  }

  void run(detail::MetaOp& op) {
    server_.execute(op);
    bool took_marker = op.cmd == detail::MetaCmd::remove && op.cas != 0 && !op.invalidate &&
                       op.status == StoreStatus::ok && s_.markers.count(op.cas);
    if (took_marker && s_.held_by_other(op.cas, s_.acting))
      s_.fail("p" + std::to_string(pid_) + " deleted a lease marker another caller loads under");
    if (op.cmd == detail::MetaCmd::get && op.won && !op.stale && op.item->value.empty() &&
        op.item->flags == 0)
      s_.marker_taken(pid_, op.item->cas);  // a placeholder won
  }

  Sim& s_;
  int pid_;
  SimMeta& server_;
};

// One simulated process: its tables, its protocol over its own network, its callers.
struct Process {
  Process(Sim& s, int id, const Options& o, double loss, SimMeta* meta, bool grouped)
      : sim(s),
        id(id),
        opt(o),
        report("p" + std::to_string(id),
               [&s, id](const Event& e) {
                 if (e.type == EventType::lease_wait || e.type == EventType::stale_set_prevented)
                   s.note("p%d %s %s %s", id, to_string(e.type), std::string(e.key).c_str(),
                          std::string(e.reason).c_str());
                 if (e.type == EventType::lease_wait && e.reason == "timeout")
                   s.waited_out(id, std::string(e.key), std::chrono::duration_cast<Ms>(e.duration));
               }),
        net(std::make_shared<SimNet>(s, id, s.memcached, loss)),
        meta_net(meta ? std::make_shared<SimMetaNet>(s, id, *meta, loss) : nullptr),
        codec(StringSerializer(), opt, 1s, *s.clock, report),
        protocol(meta ? std::unique_ptr<LookupProtocol>(
                            std::make_unique<detail::MetaProtocol>(*meta_net, policy()))
                      : std::make_unique<detail::ClassicProtocol>(net, policy())),
        // The group's counter and the near log live where the process's items do.
        group(own_store(), grouped ? "g%G" : "", Ms(0), s.clock),
        pending(
            {std::chrono::hours(1), 100, "", group.key(), nullptr},
            [this](detail::PendingInvalidations::Op op, const std::string& key) {
              return retry(op, key);
            },
            report),
        tables(opt, *s.clock),
        // The near cache and its log, over this process's network; its log is read
        // by the scheduler (sync_near), not by a thread.
        near(opt.near_ttl.count()
                 ? std::make_unique<detail::Near<std::string>>(opt, own_store(), "nl", s.clock,
                                                               report, detail::NearReading::owner)
                 : nullptr),
        reads(opt, report, codec, pending, near.get(), tables),
        writes{report, pending, near.get(), tables.flights, tables.throttle, group.key()} {}

  std::shared_ptr<Store> own_store() const {
    return meta_net ? std::shared_ptr<Store>(meta_net) : std::shared_ptr<Store>(net);
  }

  LookupPolicy policy() {
    LookupPolicy p;
    p.codec = StringSerializer::codec;
    p.lease_ttl = opt.lease_ttl;
    p.stale_on_invalidate = opt.stale_on_invalidate;
    p.clock = sim.clock;
    return p;
  }

  // The memcached key of key: with a group, under its current generation (read
  // through the network; false when it could not be read, as CacheAside's).
  bool mkey(const std::string& key, std::string& out) {
    out = key;
    if (!group.enabled()) return true;
    StoreStatus failed = StoreStatus::ok;
    auto gen = group.current(failed);
    out += "%g" + std::to_string(gen.value_or(0));
    return gen.has_value();
  }

  // The network's state, whichever protocol runs over it.
  void partition(bool on) {
    net->partitioned = on;
    if (meta_net) meta_net->partitioned = on;
    if (on) net->faults = true;
  }
  bool faults() const { return net->faults || (meta_net && meta_net->faults); }
  void heal() {
    partition(false);
    net->loss = 0;
    if (meta_net) meta_net->loss = 0;
  }

  // A pending invalidation retried: applied at once (one event of the scheduler).
  StoreStatus retry(detail::PendingInvalidations::Op op, const std::string& key) {
    Inv f(writes, Inv::retry_of(op), key);
    detail::run_write(f, *protocol, group, near.get());
    sim.note("p%d retry of %s: %s", id, key.c_str(), to_string(f.status()));
    return f.status();
  }

  StoreStatus write_step(const detail::WriteAction& a) {
    return detail::run_write_step(a, *protocol, group, near.get());
  }

  // Markers this process took that none of its callers holds any more.
  void let_go_markers();

  // The near log read, as the background would every near_sync / 2.
  void sync_near() {
    std::size_t before = near->size();
    near->sync_now();
    if (near->size() != before)
      sim.note("p%d near log read: %zu -> %zu near", id, before, near->size());
  }

  Sim& sim;
  int id;
  Options opt;
  detail::Reporter report;
  std::shared_ptr<SimNet> net;           // classic: Store calls
  std::shared_ptr<SimMetaNet> meta_net;  // meta: batches of meta commands
  detail::ValueCodec<std::string, StringSerializer> codec;
  std::unique_ptr<LookupProtocol> protocol;
  detail::GroupGeneration group;  // Options::group, in some schedules
  detail::PendingInvalidations pending;
  detail::MissTables<std::string> tables;
  std::unique_ptr<detail::Near<std::string>> near;  // null: off
  Ctx reads;
  detail::WriteContext<std::string> writes;
  std::vector<class Caller*> callers;
};

// The versions an observer must not read below: per key, the newest write whose
// invalidation had returned, in this process and in any.
struct Floors {
  std::map<std::string, int> own[8], any;
  std::map<std::string, Ms> own_at[8], any_at;  // when each was last raised
};

// One caller: a few operations in a row, each driven to its end through events.
class Caller {
 public:
  Caller(Sim& s, Process& p, Floors& floors, int id, int ops)
      : s_(s), p_(p), floors_(floors), id_(id), ops_left_(ops) {}

  void start() {
    s_.after(Ms(s_.uniform(0, 20)), [this] { next_op(); });
  }
  bool finished() const { return ops_left_ == 0 && !read_ && !write_; }
  // A caller parked on a flight, woken when it is ready.
  bool parked() const { return parked_; }
  void poke() {
    if (parked_ && parked_m_->fl.flight->ready()) {
      parked_ = false;
      parked_m_->ready = true;
      s_.after(Ms(0), [this] { step_read(); });
    }
  }
  Ms worst_wait() const { return worst_; }
  // True while one of this caller's keys holds the lease marker `cas`.
  bool holds(std::uint64_t cas) {
    if (read_)
      for (M& m : read_->units())
        if (m.look.token.marker && m.look.token.cas == cas) return true;
    return false;
  }

 private:
  std::string key(int k) const { return "k" + std::to_string(k); }

  void next_op() {
    if (ops_left_ == 0) return;
    --ops_left_;
    began_ = s_.now_ms();
    int kind = s_.uniform(0, 9);
    if (kind < 3) return write(key(s_.uniform(0, n_keys - 1)), kind == 0);
    floor_own_ = floors_.own[p_.id];
    floor_any_ = floors_.any;
    own_at_ = floors_.own_at[p_.id];
    any_at_ = floors_.any_at;
    if (kind < 7) {
      begin_read(Read::Mode::get, {key(s_.uniform(0, n_keys - 1))});
    } else if (kind < 9) {
      begin_read(Read::Mode::get, {"k0", "k1"});
    } else {
      begin_read(Read::Mode::peek, {key(s_.uniform(0, n_keys - 1))});
    }
  }

  void begin_read(Read::Mode mode, std::vector<std::string> keys) {
    read_ = std::make_unique<Read>(p_.reads, mode, keys.size() > 1, keys.size());
    // Over meta, every other caller runs its steps as the asynchronous driver does:
    // a round trip per round, one step machine reused for all the steps of a read.
    if (p_.meta_net && id_ % 2 == 1)
      rounds_ = std::make_unique<detail::MetaRounds<M>>(
          static_cast<detail::MetaProtocol&>(*p_.protocol).lookups());
    for (auto& k : keys) {
      std::string mk;
      bool cacheable = p_.mkey(k, mk);
      read_->add(k, mk, cacheable);
    }
    s_.note("p%d.%d %s %s%s", p_.id, id_, mode == Read::Mode::peek ? "peek" : "get",
            keys.front().c_str(), keys.size() > 1 ? " +" : "");
    step_read();
  }

  // Resumes the read machine and does what it asks, as events.
  void step_read() {
    act_ = read_->resume(s_.clock->now());
    switch (act_.step) {
      case Step::done:
        return end_read();
      case Step::lookup:
      case Step::acquire:
      case Step::release:
      case Step::commit:
        if (rounds_) {
          before_step(act_);
          rounds_->start(act_);
          return next_round();
        }
        return round_trip([this] { apply(act_); });
      case Step::load: {
        std::vector<std::pair<M*, int>> reads;
        for (M* m : *act_.ms) reads.push_back({m, s_.source[m->key]});  // read at the start
        bool fails = s_.chance(0.05);
        s_.note("p%d.%d load %s v%d%s", p_.id, id_, act_.ms->front()->key.c_str(),
                reads.front().second, fails ? " (will throw)" : "");
        Ms took(s_.uniform(1, 30));
        s_.after(took, [this, reads, fails, took] {
          for (auto& [m, v] : reads) {
            if (fails) {
              m->error = std::make_exception_ptr(std::runtime_error("db down"));
            } else {
              m->loaded = "v" + std::to_string(v);
              m->load_us = static_cast<std::uint32_t>(took.count() * 1000);
            }
          }
          step_read();
        });
        return;
      }
      case Step::sleep:
        return s_.after(std::chrono::duration_cast<Ms>(act_.delay) + Ms(1),
                        [this] { step_read(); });
      case Step::await:
        parked_ = true;
        parked_m_ = act_.ms->front();
        return poke();
      case Step::lead:
        s_.fail("a detached lead without loader timeouts");
        return;
    }
  }

  // The blocking driver's way: the whole step against the protocol, in one event.
  void apply(detail::Action<M>& a) {
    before_step(a);
    s_.acting = this;
    detail::run_protocol_step(*p_.protocol, a);
    s_.acting = nullptr;
    p_.let_go_markers();
    after_step(a);
  }

  // The asynchronous driver's way: each round of the step a round trip of its own.
  void next_round() {
    std::vector<detail::MetaOp>* r = rounds_->next();
    if (!r) {
      after_step(act_);
      return step_read();
    }
    s_.after(s_.hop(), [this, r] {
      s_.acting = this;
      p_.meta_net->execute(r->data(), r->size());
      s_.acting = nullptr;
      p_.let_go_markers();
      s_.after(s_.hop(), [this] { next_round(); });
    });
  }

  void before_step(detail::Action<M>& a) {
    if (a.step == Step::release)
      for (M* m : *a.ms) {
        s_.progressed(m->mkey);
        s_.note("p%d.%d release %s", p_.id, id_, m->mkey.c_str());
      }
  }

  void after_step(detail::Action<M>& a) {
    if (a.step == Step::acquire || a.step == Step::lookup)
      for (M* m : *a.ms)
        s_.note("p%d.%d %s %s: %s", p_.id, id_, a.step == Step::acquire ? "acquire" : "lookup",
                m->mkey.c_str(), state_name(m->look.state));
    if (a.step == Step::commit)
      for (CommitRequest& r : *a.commits) {
        s_.progressed(std::string(r.key));
        s_.note("p%d.%d commit %s: %s", p_.id, id_, std::string(r.key).c_str(),
                to_string(r.status));
      }
  }

  // The request reaches memcached after a delay, its reply comes back after another.
  template <class Fn>
  void round_trip(Fn apply_it) {
    s_.after(s_.hop(), [this, apply_it] {
      apply_it();
      s_.after(s_.hop(), [this] { step_read(); });
    });
  }

  void end_read() {
    Ms took = s_.now_ms() - began_;
    if (took > worst_) worst_ = took;
    std::exception_ptr error = act_.error;
    for (M& m : read_->units()) {
      if (error || !m.value) continue;
      int v = std::atoi(m.value->c_str() + 1);
      s_.note("p%d.%d   -> %s = %s", p_.id, id_, m.key.c_str(), m.value->c_str());
      if (s_.excused(m.key, *m.value)) continue;
      int own = floor_own_.count(m.key) ? floor_own_[m.key] : 0;
      int any = floor_any_.count(m.key) ? floor_any_[m.key] : 0;
      // stale_on_invalidate (opted in) serves the old value for a while after each.
      if (v < own && began_ - own_at_[m.key] <= s_.stale_window) own = 0;
      if (v < any && began_ - any_at_[m.key] <= s_.stale_window) any = 0;
      // The near cache (opted in) may serve another process's old value for near_sync.
      if (v < any && began_ - any_at_[m.key] <= s_.near_window) any = 0;
      if (v < own)
        s_.fail("p" + std::to_string(p_.id) + " read " + m.key + " = v" + std::to_string(v) +
                " after its own process's invalidation of v" + std::to_string(own) + " returned");
      else if (v < any && !faulty())
        s_.fail("p" + std::to_string(p_.id) + " read " + m.key + " = v" + std::to_string(v) +
                " after another process's invalidation of v" + std::to_string(any) + " returned");
    }
    if (error) s_.note("p%d.%d   -> error", p_.id, id_);
    read_.reset();
    s_.after(Ms(s_.uniform(0, 10)), [this] { next_op(); });
  }

 public:
  std::function<bool()> faulty;

 private:
  // A write to the source, then its invalidation (a delete, or a write-through).
  void write(const std::string& k, bool put) {
    int v = ++s_.source[k];
    s_.write_began[k][v] = s_.now_ms();
    s_.progressed(k);
    if (put) s_.put_ended[k][v] = Ms::max();
    s_.note("p%d.%d write %s = v%d, then %s", p_.id, id_, k.c_str(), v, put ? "put" : "invalidate");
    written_ = v;
    written_key_ = k;
    value_.bytes.clear();
    std::string mk;
    if (!p_.mkey(k, mk)) {
      // The generation could not be read: the key could be any generation's, so the
      // whole group is bumped later (CacheAside's unreachable_group).
      detail::unreachable_group(p_.writes);
      putting_ = false;
      return s_.after(Ms(0), [this] { write_done(false); });
    }
    s_.progressed(mk);
    bool all = p_.group.enabled() && s_.chance(0.3);
    if (all) s_.note("p%d.%d   (invalidate_all)", p_.id, id_);
    if (put && !p_.codec.encode(k, std::optional<std::string>("w" + std::to_string(v)), 0, value_))
      put = false;
    putting_ = put && !all;
    write_ = std::make_unique<Inv>(p_.writes,
                                   all   ? Inv::Kind::all
                                   : put ? Inv::Kind::put
                                         : Inv::Kind::remove,
                                   all ? std::string() : mk, putting_ ? &value_ : nullptr);
    step_write(StoreStatus::ok);
  }

  void write_done(bool confirmed) {
    s_.note("p%d.%d   -> %s", p_.id, id_, confirmed ? "confirmed" : "pending");
    int& own = floors_.own[p_.id][written_key_];
    if (written_ > own) own = written_, floors_.own_at[p_.id][written_key_] = s_.now_ms();
    int& any = floors_.any[written_key_];
    if (written_ > any) any = written_, floors_.any_at[written_key_] = s_.now_ms();
    if (putting_) s_.put_ended[written_key_][written_] = s_.now_ms();
    write_.reset();
    s_.after(Ms(s_.uniform(0, 10)), [this] { next_op(); });
  }

  void step_write(StoreStatus st) {
    detail::WriteAction a = write_->resume(st);
    if (a.step == WriteStep::done) return write_done(write_->ok());
    // Over meta, every other writer runs its steps as the asynchronous driver does:
    // a round trip per round of MetaWriteRounds.
    if (p_.meta_net && id_ % 2 == 1) {
      if (!write_rounds_)
        write_rounds_ = std::make_unique<detail::MetaWriteRounds>(
            static_cast<detail::MetaProtocol&>(*p_.protocol).lookups(), p_.group,
            p_.near ? &p_.near->log() : nullptr);
      write_rounds_->start(a);
      return next_write_round();
    }
    s_.after(s_.hop(), [this, a] {
      StoreStatus r = p_.write_step(a);
      s_.after(s_.hop(), [this, r] { step_write(r); });
    });
  }

  void next_write_round() {
    std::vector<detail::MetaOp>* r = write_rounds_->next();
    if (!r) return step_write(write_rounds_->status());
    s_.after(s_.hop(), [this, r] {
      p_.meta_net->execute(r->data(), r->size());
      s_.after(s_.hop(), [this] { next_write_round(); });
    });
  }

  Sim& s_;
  Process& p_;
  Floors& floors_;
  int id_;
  int ops_left_;
  Ms began_{}, worst_{};
  std::map<std::string, int> floor_own_, floor_any_;
  std::map<std::string, Ms> own_at_, any_at_;
  std::unique_ptr<Read> read_;
  detail::Action<M> act_;
  std::unique_ptr<detail::MetaRounds<M>> rounds_;          // meta, as the async driver runs it
  std::unique_ptr<detail::MetaWriteRounds> write_rounds_;  // likewise, for writes
  bool parked_ = false;
  M* parked_m_ = nullptr;
  std::unique_ptr<Inv> write_;
  detail::Encoded value_;
  int written_ = 0;
  bool putting_ = false;
  std::string written_key_;
};

void Process::let_go_markers() {
  for (auto& [cas, m] : sim.markers) {
    if (m.pid != id || m.let_go >= Ms(0)) continue;
    bool held = false;
    for (Caller* c : callers) held = held || c->holds(cas);
    if (!held) m.let_go = sim.now_ms();
  }
}

// Runs one schedule; returns its violation ("" when none).
std::string run(std::uint64_t seed, bool trace, std::vector<std::string>* log) {
  Sim s(seed, trace);
  Options o;
  o.clock = s.clock;
  o.ttl = std::chrono::seconds(s.uniform(1, 3));
  o.ttl_jitter = 0;
  o.early_refresh_beta = 0;
  // Longer than a load (at most 30 ms) and its round trips (at most 4 x 40 ms): in a
  // schedule without faults every lease holder is alive and finishes within it.
  o.lease_wait = Ms(s.uniform(200, 400));
  o.lease_ttl = std::chrono::seconds(1);
  const char* mutation = std::getenv("CACHEASIDE_SIM_MUTATION");
  if (mutation && std::string(mutation) == "no-leases") o.leases = false;
  bool lossy = s.chance(0.4);
  double loss = lossy ? std::vector<double>{0.02, 0.1, 0.25}[s.uniform(0, 2)] : 0.0;
  int n_proc = s.uniform(2, 3);
  // Half the schedules speak the meta protocol (MetaStore's), half the classic one.
  std::unique_ptr<SimMeta> meta;
  if (s.chance(0.5)) {
    meta = std::make_unique<SimMeta>(s.clock);
    if (s.chance(0.3)) {
      o.stale_on_invalidate = std::chrono::seconds(s.uniform(1, 2));
      // Opted in: the previous value is served while one caller reloads, for at most
      // that long after the invalidation (+1 s: memcached's whole-second expiry).
      s.stale_window = std::chrono::duration_cast<Ms>(o.stale_on_invalidate) + Ms(1000);
    }
    s.note("meta protocol%s", o.stale_on_invalidate.count() ? ", stale_on_invalidate" : "");
  } else {
    s.note("classic protocol");
  }
  // Some schedules put the keys in a group (Options::group): keys under its
  // generation, and some writes invalidate_all.
  bool grouped = s.chance(0.3);
  if (grouped) s.note("group");
  // Some schedules keep a near cache in every process, coherent through the log.
  if (s.chance(0.35)) {
    o.near_ttl = std::chrono::seconds(s.uniform(1, 3));
    o.near_sync = Ms(s.uniform(20, 120));
    s.near_window = o.near_sync;
    s.note("near cache, near_sync %lld ms", static_cast<long long>(o.near_sync.count()));
  }
  s.marker_at = [&s, m = meta.get()](const std::string& key) -> std::uint64_t {
    if (m) return m->placeholder_cas(key);
    StoreItem i;
    bool marker = s.memcached->get(key, i) == StoreStatus::ok && (i.flags & envelope::lease_bit);
    return marker ? i.cas : 0;
  };
  Floors floors;
  std::vector<std::unique_ptr<Process>> procs;
  for (int p = 0; p < n_proc; ++p)
    procs.push_back(std::make_unique<Process>(s, p, o, loss, meta.get(), grouped));
  // Sometimes one process is cut off for a while.
  bool partition = s.chance(0.2);
  if (partition) {
    Process* cut = procs[s.uniform(0, n_proc - 1)].get();
    Ms from(s.uniform(0, 60)), len(s.uniform(10, 80));
    s.at(from, [&s, cut] {
      cut->partition(true);
      s.note("p%d partitioned", cut->id);
    });
    s.at(from + len, [&s, cut] {
      cut->partition(false);
      s.note("p%d healed", cut->id);
    });
  }
  // Sometimes memcached restarts (everything gone: values, leases, placeholders), and
  // a classic one is small enough to evict.
  if (s.chance(0.15)) {
    s.at(Ms(s.uniform(0, 150)), [&s, m = meta.get()] {
      if (m) m->clear();
      s.memcached->clear();  // the classic protocol's items, or the near log's
      s.note("memcached restarted");
    });
  }
  if (!meta && s.chance(0.15))
    s.memcached->set_max_items(static_cast<std::size_t>(s.uniform(1, 2)));
  auto faulty = [&] {
    for (auto& p : procs)
      if (p->faults()) return true;
    return false;
  };
  std::vector<std::unique_ptr<Caller>> callers;
  s.held_by_other = [&callers](std::uint64_t cas, const void* acting) {
    for (auto& c : callers)
      if (c.get() != acting && c->holds(cas)) return true;
    return false;
  };
  for (auto& p : procs)
    for (int c = 0; c < s.uniform(1, 3); ++c) {
      callers.push_back(std::make_unique<Caller>(s, *p, floors, c, s.uniform(2, 5)));
      p->callers.push_back(callers.back().get());
      callers.back()->faulty = faulty;
      callers.back()->start();
    }
  // The background's work goes on while some caller is still working.
  auto busy = [&] {
    for (auto& c : callers)
      if (!c->finished()) return true;
    return false;
  };
  // Retries of pending invalidations, as each process's background would.
  std::function<void()> retries = [&] {
    for (auto& p : procs)
      if (p->pending.size() > 0) p->pending.retry_now();
    if (busy()) s.after(Ms(25), retries);
  };
  s.after(Ms(25), retries);
  std::function<void()> near_reads = [&] {
    for (auto& p : procs) p->sync_near();
    if (busy()) s.after(o.near_sync / 2, near_reads);
  };
  if (o.near_ttl.count()) s.after(o.near_sync / 2, near_reads);

  Ms limit = Ms(60000);
  while (!s.events.empty() && s.violation.empty()) {
    Sim::Event e = s.events.top();
    s.events.pop();
    if (e.at > limit) {
      s.fail("the schedule ran past 60 s of simulated time");
      break;
    }
    if (e.at > s.now_ms()) s.clock->advance(e.at - s.now_ms());
    e.fn();
    for (auto& c : callers) c->poke();
  }
  if (s.violation.empty()) {
    for (auto& c : callers)
      if (!c->finished()) s.fail("a caller never finished (waiting on a flight nobody ends)");
    Ms bound = 2 * o.lease_wait + Ms(400);
    for (auto& c : callers)
      if (c->worst_wait() > bound)
        s.fail("a call took " + std::to_string(c->worst_wait().count()) + " ms (bound " +
               std::to_string(bound.count()) + " ms)");
  }
  // The network heals: every pending invalidation is applied, none is lost.
  if (s.violation.empty()) {
    for (auto& p : procs) {
      p->heal();
      if (p->pending.retry_now() != 0) s.fail("an invalidation stayed pending after the heal");
      if (p->tables.flights.size() != 0) s.fail("a flight was left in the table");
    }
    for (int k = 0; k < n_keys && s.violation.empty(); ++k) {
      std::string key = "k" + std::to_string(k);
      Lookup l;
      std::string mk;
      if (!procs[0]->mkey(key, mk)) s.fail("the group generation unreadable after the heal");
      procs[0]->protocol->read(mk, l);
      std::optional<std::string> v;
      if (l.state == LookupState::hit && procs[0]->codec.decode(mk, l, v) && v &&
          !s.excused(key, *v)) {
        int got = std::atoi(v->c_str() + 1);
        if (got < s.source[key])
          s.fail("memcached kept " + key + " = v" + std::to_string(got) + " after v" +
                 std::to_string(s.source[key]) + " was written and invalidated");
      }
    }
  }
  if (log) *log = s.log;
  return s.violation;
}

}  // namespace

int main(int argc, char** argv) {
  long long want = argc > 1 ? std::atoll(argv[1]) : 100000;
  if (const char* e = std::getenv("CACHEASIDE_SIM_SCHEDULES")) want = std::atoll(e);
  double seconds = argc > 2 ? std::atof(argv[2]) : 60;
  if (const char* one = std::getenv("CACHEASIDE_SIM_SEED")) {
    std::uint64_t seed = std::strtoull(one, nullptr, 10);
    std::vector<std::string> log;
    std::string v = run(seed, true, &log);
    for (auto& line : log) std::printf("%s\n", line.c_str());
    std::printf("seed %llu: %s\n", static_cast<unsigned long long>(seed),
                v.empty() ? "no violation" : v.c_str());
    return v.empty() ? 0 : 1;
  }
  std::uint64_t first = 1;
  if (const char* f = std::getenv("CACHEASIDE_SIM_FIRST")) first = std::strtoull(f, nullptr, 10);
  auto t0 = std::chrono::steady_clock::now();
  long long n = 0, violations = 0;
  std::uint64_t first_bad = 0;
  std::string first_why;
  for (; n < want; ++n) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds)
      break;
    std::string v = run(first + static_cast<std::uint64_t>(n), false, nullptr);
    if (!v.empty()) {
      if (violations++ == 0) {
        first_bad = first + static_cast<std::uint64_t>(n);
        first_why = v;
      }
    }
  }
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("simulation: %lld schedules, %lld violations (%.1f s)\n", n, violations, took);
  if (violations) {
    std::printf("first violation: seed %llu (after %llu schedules): %s\n",
                static_cast<unsigned long long>(first_bad),
                static_cast<unsigned long long>(first_bad - first + 1), first_why.c_str());
    std::printf("replay it with: CACHEASIDE_SIM_SEED=%llu %s\n",
                static_cast<unsigned long long>(first_bad), argv[0]);
    return 1;
  }
  return n < want ? 1 : 0;  // fewer schedules than asked within the time: a failure too
}
