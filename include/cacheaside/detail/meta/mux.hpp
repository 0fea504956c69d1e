// One connection's requests and replies, multiplexed, without I/O (internal):
// callers' ops queue, each write takes everything queued, replies are matched
// in order and each is checked against its O token. A lost connection fails what
// was written (the server may have run it) and keeps what was not, for the next.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "command.hpp"
#include "op.hpp"
#include "reply.hpp"

namespace cacheaside::detail {

struct MetaMuxLimits {
  std::size_t max_requests = 4096;  ///< queued + awaiting a reply; beyond, submit refuses
  std::size_t max_line = 8192;      ///< a longer line without "\r\n" is not a reply
};

class MetaMux {
 public:
  using Time = std::chrono::steady_clock::time_point;
  /// Whose op it is: handed back when the op has its status.
  using Tag = void*;

  explicit MetaMux(MetaMuxLimits limits = {}) : limits_(limits) {}

  MetaMux(const MetaMux&) = delete;
  MetaMux& operator=(const MetaMux&) = delete;

  /// Queues op until `deadline`. False when the bound is reached: the op is not
  /// taken. op (its key, value and item) must stay valid until it is handed back.
  bool submit(MetaOp& op, Tag tag, Time deadline) {
    if (queued_.size() + sent_.size() >= limits_.max_requests) return false;
    op.why = nullptr;
    queued_.push_back(Entry{&op, tag, 0, deadline});
    return true;
  }

  std::size_t queued() const { return queued_.size(); }
  std::size_t awaiting() const { return sent_.size(); }
  bool idle() const { return queued_.empty() && sent_.empty(); }

  /// Appends queued requests to `out`, oldest first, until it holds `max_bytes`
  /// (at least one request); from now on they await replies.
  void take_write(std::string& out, std::size_t max_bytes = static_cast<std::size_t>(-1)) {
    std::size_t start = out.size();
    while (!queued_.empty() && (out.size() == start || out.size() - start < max_bytes)) {
      Entry& e = queued_.front();
      e.opaque = next_opaque_++;
      encode_meta_op(out, *e.op, static_cast<std::size_t>(e.opaque));
      e.op->sent = true;
      sent_.push_back(e);
      queued_.pop_front();
    }
  }

  /// Where the next read goes, room for at least `want` bytes (or the rest of a
  /// value being read, if more); then received(n).
  char* read_space(std::size_t want, std::size_t& room) {
    std::size_t have = end_ - pos_;
    if (value_left_ > have && value_left_ - have > want) want = value_left_ - have;
    if (in_.size() - end_ < want) in_.resize(end_ + want);
    room = in_.size() - end_;
    return in_.data() + end_;
  }

  /// n bytes arrived in read_space. Applies every whole reply to its op and
  /// appends its tag to `done`. False: the connection is out of step (a reply that
  /// does not parse, answers another request, or arrives unasked): close it.
  bool received(std::size_t n, std::vector<Tag>& done) {
    end_ += n;
    for (;;) {
      std::string_view avail(in_.data() + pos_, end_ - pos_);
      if (value_left_ == 0) {
        std::size_t eol = avail.find("\r\n");
        if (eol == std::string_view::npos) {
          if (avail.size() > limits_.max_line) return false;
          break;
        }
        if (sent_.empty()) return false;  // nobody asked
        Entry& e = sent_.front();
        MetaNext next = parse_meta_reply(avail.substr(0, eol), reply_)
                            ? meta_reply_line(reply_, *e.op, e.opaque)
                            : MetaNext::broken;
        if (next == MetaNext::broken) return false;
        pos_ += eol + 2;
        if (next == MetaNext::done) {
          finish(done);
          continue;
        }
        value_left_ = reply_.size + 2;  // the value and its "\r\n"
        continue;
      }
      if (avail.size() < value_left_) break;
      Entry& e = sent_.front();
      std::string_view value = avail.substr(0, value_left_ - 2);
      if (avail.substr(value_left_ - 2, 2) != "\r\n") return false;
      std::string digits;
      std::string& into = e.op->cmd == MetaCmd::get ? e.op->item->value : digits;
      into.assign(value.data(), value.size());
      pos_ += value_left_;
      value_left_ = 0;
      if (meta_reply_value(reply_, into, *e.op) == MetaNext::broken) return false;
      finish(done);
    }
    compact();
    return true;
  }

  /// The connection is gone: what was written fails with `st` (to `done`); what
  /// was not stays queued for the next connection.
  void lost(StoreStatus st, std::vector<Tag>& done) {
    for (Entry& e : sent_) {
      e.op->status = st;
      done.push_back(e.tag);
    }
    sent_.clear();
    pos_ = end_ = value_left_ = 0;
  }

  /// Fails every queued op (the server cannot be reached) with `st` (and `why`,
  /// MetaOp::why).
  void fail_queued(StoreStatus st, std::vector<Tag>& done, const char* why = nullptr) {
    for (Entry& e : queued_) {
      e.op->status = st;
      e.op->why = why;
      done.push_back(e.tag);
    }
    queued_.clear();
  }

  /// The earliest deadline of any op here (Time::max() when none).
  Time next_deadline() const {
    Time t = Time::max();
    if (!queued_.empty()) t = queued_.front().deadline;
    if (!sent_.empty() && sent_.front().deadline < t) t = sent_.front().deadline;
    return t;
  }

  /// Fails the queued ops past their deadline with `timeout`. True when a
  /// written op is past its deadline: the server is not answering; close the
  /// connection (lost(timeout)).
  bool expire(Time now, std::vector<Tag>& done) {
    while (!queued_.empty() && queued_.front().deadline <= now) {
      queued_.front().op->status = StoreStatus::timeout;
      done.push_back(queued_.front().tag);
      queued_.pop_front();
    }
    return !sent_.empty() && sent_.front().deadline <= now;
  }

 private:
  struct Entry {
    MetaOp* op;
    Tag tag;
    std::uint64_t opaque;
    Time deadline;
  };

  void finish(std::vector<Tag>& done) {
    done.push_back(sent_.front().tag);
    sent_.pop_front();
  }

  // Drops what was parsed, so the buffer holds at most one partial reply.
  void compact() {
    if (pos_ == end_) {
      pos_ = end_ = 0;
    } else if (pos_ > 0 && pos_ >= (end_ - pos_)) {
      std::copy(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
                in_.begin() + static_cast<std::ptrdiff_t>(end_), in_.begin());
      end_ -= pos_;
      pos_ = 0;
    }
    if (in_.size() > 1 << 20 && end_ < (1 << 16)) in_.resize(1 << 16);  // after a big value
  }

  MetaMuxLimits limits_;
  std::deque<Entry> queued_;
  std::deque<Entry> sent_;
  std::uint64_t next_opaque_ = 1;
  std::string in_;
  std::size_t pos_ = 0;         // parsed up to here
  std::size_t end_ = 0;         // received up to here
  std::size_t value_left_ = 0;  // a VA's value and "\r\n" still to come
  MetaReply reply_;             // the line of the value being read
};

}  // namespace cacheaside::detail
