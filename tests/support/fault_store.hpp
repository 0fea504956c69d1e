// A Store wrapper that counts operations and injects failures, delays and
// pauses at a chosen call.
#pragma once

#include <atomic>
#include <cacheaside/store.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace cacheaside_test {

class FaultStore : public cacheaside::Store {
 public:
  explicit FaultStore(std::shared_ptr<cacheaside::Store> inner) : inner_(std::move(inner)) {}

  std::atomic<bool> fail{false};          // every operation answers `failure`
  std::atomic<bool> fail_writes{false};   // set/add/cas answer `failure`
  std::atomic<bool> fail_removes{false};  // remove answers `failure`
  cacheaside::StoreStatus failure = cacheaside::StoreStatus::unavailable;
  std::atomic<int> gets{0}, multi_gets{0}, sets{0}, adds{0}, cases{0}, removes{0}, incrs{0};

  /// Each operation first waits this long (as a slow network would).
  std::atomic<std::chrono::microseconds::rep> delay_us{0};
  /// Called after each operation with its name ("get", "get_multi", "set", "add",
  /// "cas", "remove", "incr"), key (the first, for get_multi) and status; may block
  /// to pin an interleaving. Set it before the store is shared.
  std::function<void(const char* op, std::string_view key, cacheaside::StoreStatus st)> after;

  int round_trips() const { return gets + multi_gets + sets + adds + cases + removes + incrs; }
  void reset_counts() { gets = multi_gets = sets = adds = cases = removes = incrs = 0; }

  using S = cacheaside::StoreStatus;
  S get(std::string_view k, cacheaside::StoreItem& i) override {
    ++gets;
    return done("get", k, fail ? failure : inner_->get(k, i));
  }
  S get_multi(const std::vector<std::string>& k, std::vector<cacheaside::StoreItem>& i,
              std::vector<char>& f) override {
    ++multi_gets;
    std::string_view first = k.empty() ? std::string_view() : std::string_view(k.front());
    if (fail) {
      i.resize(k.size());
      f.assign(k.size(), 0);
      return done("get_multi", first, failure);
    }
    return done("get_multi", first, inner_->get_multi(k, i, f));
  }
  S set(std::string_view k, std::string_view v, std::uint32_t fl, cacheaside::Exptime e) override {
    ++sets;
    return done("set", k, fail || fail_writes ? failure : inner_->set(k, v, fl, e));
  }
  S add(std::string_view k, std::string_view v, std::uint32_t fl, cacheaside::Exptime e) override {
    ++adds;
    return done("add", k, fail || fail_writes ? failure : inner_->add(k, v, fl, e));
  }
  S cas(std::string_view k, std::string_view v, std::uint32_t fl, cacheaside::Exptime e,
        std::uint64_t c) override {
    ++cases;
    return done("cas", k, fail || fail_writes ? failure : inner_->cas(k, v, fl, e, c));
  }
  S remove(std::string_view k) override {
    ++removes;
    return done("remove", k, fail || fail_removes ? failure : inner_->remove(k));
  }
  S incr(std::string_view k, std::uint64_t d, std::uint64_t init, cacheaside::Exptime e,
         std::uint64_t& v) override {
    ++incrs;
    return done("incr", k, fail ? failure : inner_->incr(k, d, init, e, v));
  }

 private:
  S done(const char* op, std::string_view key, S st) {
    if (auto us = delay_us.load()) std::this_thread::sleep_for(std::chrono::microseconds(us));
    if (after) after(op, key, st);
    return st;
  }

  std::shared_ptr<cacheaside::Store> inner_;
};

}  // namespace cacheaside_test
