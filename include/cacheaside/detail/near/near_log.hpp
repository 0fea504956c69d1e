// The invalidation log that keeps near caches of different processes coherent
// through memcached alone (internal).
//
// In memcached, for one cache: a sequence counter `<base>%c`, and a ring of
// `ring` slots `<base>%s<seq mod ring>`, each holding "<seq> <memcached key>"
// ("*" for everything: a group bump). A writer increments the counter, then
// fills the slot of the number it got. A reader remembers the last number it
// applied and reads the slots after it; anything it cannot account for (the
// counter evicted or reset, more new records than slots, a slot missing twice
// or overwritten) is a gap: the reader drops its whole near cache. With signing
// keys each record ends with " <key id> <hex HMAC>" (over the log's base and the
// record), and a record without a valid one counts as missing: a forged or moved
// slot drops the near cache. Each read also looks one slot past the counter: a
// record there means the counter was set back after a writer's increment (or a
// writer is in between): its key is dropped at once, and if the next read finds
// the counter still short of it, that is a gap. What no reader can see is a
// record deleted after the counter was set back: against a writer with access to
// memcached, near_ttl is the bound (docs/security.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../clock.hpp"
#include "../../options.hpp"
#include "../../store.hpp"
#include "../integrity/signer.hpp"

namespace cacheaside::detail {

class NearLog {
 public:
  /// What one read found.
  struct Read {
    bool ok = false;                // the log was read up to the counter: the near cache is current
    bool gap = false;               // drop everything
    std::vector<std::string> keys;  // drop these ("*": everything)
  };

  NearLog(std::shared_ptr<Store> store, std::string base, std::size_t ring,
          std::shared_ptr<Clock> clock, const std::vector<SigningKey>& signing_keys = {})
      : store_(std::move(store)),
        base_(std::move(base)),
        ring_(ring),
        clock_(std::move(clock)),
        counter_(base_ + "%c") {
    if (!signing_keys.empty()) signer_.emplace(signing_keys);
  }

  /// Appends key: two round trips. Not ok: the record may be missing, which
  /// readers take for a gap (or, if the counter did not move, never see).
  StoreStatus append(const std::string& key) {
    std::uint64_t seq = 0;
    StoreStatus st = store_->incr(counter_, 1, start_value(), 0, seq);
    if (st != StoreStatus::ok) return st;
    return store_->set(slot(seq), record(seq, key), 0, 0);
  }

  /// An append is `incr counter_key() by 1 from start_value()`, then `set
  /// slot(seq) record(seq, key)` with the number it got: a driver that does its
  /// own I/O (the async cache) sends these two itself.
  const std::string& counter_key() const { return counter_; }
  // A new counter starts at the current time in microseconds: far ahead of any
  // count an older counter reached, so readers see a re-created one as a jump
  // (a gap), never as "nothing new".
  std::uint64_t start_value() const { return static_cast<std::uint64_t>(clock_->unix_ms()) * 1000; }
  std::string record(std::uint64_t seq, std::string_view key) const {
    std::string r = std::to_string(seq);
    r += ' ';
    r += key;
    if (signer_) r += signer_->record_suffix(base_, r);
    return r;
  }

  /// The slots a read gets once it has the counter.
  struct Slots {
    std::uint64_t first = 0, now = 0;  // records first..now
    std::vector<std::string> keys;     // each record's slot, then its 0.2 form; then now + 1's
  };

  /// Reads what was appended since the last read (two round trips: the counter,
  /// then the new records' slots and the one past them). Not thread-safe: one
  /// reader per log.
  Read read() {
    Read r;
    Slots s;
    std::uint64_t now = 0;
    StoreStatus st = store_->incr(counter_, 0, start_value(), 0, now);
    if (!counted(st, now, r, s)) return r;
    std::vector<StoreItem> items;
    std::vector<char> found;
    st = store_->get_multi(s.keys, items, found);
    slots_read(st, s, items, found, r);
    return r;
  }

  // read() in steps, for a driver that does its own I/O (the async cache): the
  // counter, as `incr counter_key() by 0 from start_value()` (which creates it if
  // nobody has, or it was evicted, so every reader and writer counts from the
  // same start); then counted() with its answer; then, when that says so, the
  // slots' gets and slots_read().

  /// The counter's answer: true when the slots in s must be read next; false
  /// when r is the read's result.
  bool counted(StoreStatus st, std::uint64_t now, Read& r, Slots& s) {
    if (st != StoreStatus::ok) return false;
    if (!started_) {  // the first read: nothing cached before it
      started_ = true;
      last_ = now;
      r.ok = true;
      return false;
    }
    // A record was found past the counter at the last read, and the counter has not
    // reached it since: it was set back, and what a writer numbered after it may have
    // reused a slot unseen.
    bool set_back = ahead_ != 0 && now < ahead_;
    ahead_ = 0;
    if (set_back || now < last_ || now - last_ > ring_) {
      gap(r, now);
      return false;
    }
    // Each record's slot, then its slot in the 0.2 form (a writer of 0.2 may
    // still be running beside this one); then the slot past the counter.
    s.first = last_ + 1;
    s.now = now;
    s.keys.clear();
    for (std::uint64_t q = s.first; q <= now + 1; ++q) {
      s.keys.push_back(slot(q));
      s.keys.push_back(legacy_slot(q));
    }
    return true;
  }

  /// The slots' answers (found[i]: items[i] holds s.keys[i]).
  void slots_read(StoreStatus st, const Slots& slots, const std::vector<StoreItem>& items,
                  const std::vector<char>& found, Read& r) {
    // Another read moved the log on meanwhile: these records are its to apply.
    if (st != StoreStatus::ok || last_ + 1 != slots.first) return;
    const std::uint64_t now = slots.now, first = slots.first;  // last_ moves on below
    for (std::size_t i = 0; i + 1 < slots.keys.size() / 2; ++i) {
      std::uint64_t s = first + i;
      std::string key;
      if (!record_of(items[2 * i], found[2 * i], s, key) &&
          !record_of(items[2 * i + 1], found[2 * i + 1], s, key)) {
        // A writer between its increment and its set, or a lost slot: wait
        // one read for it, then give up on it.
        if (missing_ == s) {
          gap(r, now);
          return;
        }
        missing_ = s;
        last_ = s - 1;
        return;  // not current yet: r.keys so far are applied by the caller
      }
      r.keys.push_back(std::move(key));
      last_ = s;
    }
    missing_ = 0;
    std::string key;
    std::size_t past = slots.keys.size() - 2;
    if (record_of(items[past], found[past], now + 1, key) ||
        record_of(items[past + 1], found[past + 1], now + 1, key)) {
      r.keys.push_back(std::move(key));  // dropping early is never stale
      ahead_ = now + 1;
    }
    r.ok = true;
  }

  /// The slot of record seq: `<base>%s<seq mod ring>` ('s' is no hex digit, so no
  /// escaped user key is ever a slot's key).
  std::string slot(std::uint64_t seq) const { return base_ + "%s" + std::to_string(seq % ring_); }
  /// The slot in the form 0.2 wrote, `<base>%<seq mod ring>`: read, never written.
  std::string legacy_slot(std::uint64_t seq) const {
    return base_ + "%" + std::to_string(seq % ring_);
  }

 private:
  Read& gap(Read& r, std::uint64_t now) {
    last_ = now;
    missing_ = 0;
    r.ok = true;
    r.gap = true;
    r.keys.clear();
    return r;
  }

  // A slot's item, if it holds record s: "<s> <memcached key>", signed when this log
  // has keys (what follows the key is ignored without them: keys hold no spaces).
  bool record_of(const StoreItem& item, char found, std::uint64_t s, std::string& key) const {
    std::uint64_t seq = 0;
    std::string_view v = item.value;
    std::size_t space = v.find(' ');
    if (!found || space == std::string::npos || !parse(v.substr(0, space), seq) || seq != s)
      return false;
    std::size_t end = v.find(' ', space + 1);
    if (signer_) {
      std::size_t last = v.rfind(' ');
      if (end == std::string_view::npos || last == end) return false;
      if (!signer_->record_ok(v.substr(end + 1, last - end - 1), base_, v.substr(0, end),
                              v.substr(last + 1)))
        return false;
    }
    key = std::string(v.substr(space + 1, end == std::string_view::npos ? end : end - space - 1));
    return true;
  }

  static bool parse(std::string_view s, std::uint64_t& out) {
    out = 0;
    std::size_t n = 0;
    for (char c : s) {
      if (c == ' ' || c == '\r' || c == '\n') break;  // incr may pad with spaces
      if (c < '0' || c > '9') return false;
      out = out * 10 + static_cast<std::uint64_t>(c - '0');
      ++n;
    }
    return n > 0;
  }

  std::shared_ptr<Store> store_;
  std::string base_;
  std::uint64_t ring_;
  std::shared_ptr<Clock> clock_;
  std::string counter_;
  bool started_ = false;
  std::uint64_t last_ = 0;
  std::uint64_t missing_ = 0;
  std::uint64_t ahead_ = 0;  // a record found past the counter: the counter must reach it
  std::optional<Signer> signer_;
};

}  // namespace cacheaside::detail
