// A Store wrapper that counts operations and injects failures and delays.
#pragma once

#include <atomic>
#include <cacheaside/store.hpp>
#include <chrono>
#include <memory>
#include <thread>

namespace cacheaside_test {

class FaultStore : public cacheaside::Store {
 public:
  explicit FaultStore(std::shared_ptr<cacheaside::Store> inner) : inner_(std::move(inner)) {}

  std::atomic<bool> fail{false};         // every operation answers `failure`
  std::atomic<bool> fail_writes{false};  // set/add/cas answer `failure`
  cacheaside::StoreStatus failure = cacheaside::StoreStatus::unavailable;
  std::atomic<int> gets{0}, multi_gets{0}, sets{0}, adds{0}, cases{0}, removes{0}, incrs{0};

  int round_trips() const { return gets + multi_gets + sets + adds + cases + removes + incrs; }
  void reset_counts() { gets = multi_gets = sets = adds = cases = removes = incrs = 0; }

  using S = cacheaside::StoreStatus;
  S get(std::string_view k, cacheaside::StoreItem& i) override {
    ++gets;
    return fail ? failure : inner_->get(k, i);
  }
  S get_multi(const std::vector<std::string>& k, std::vector<cacheaside::StoreItem>& i,
              std::vector<char>& f) override {
    ++multi_gets;
    if (fail) {
      i.resize(k.size());
      f.assign(k.size(), 0);
      return failure;
    }
    return inner_->get_multi(k, i, f);
  }
  S set(std::string_view k, std::string_view v, std::uint32_t fl, cacheaside::Exptime e) override {
    ++sets;
    return fail || fail_writes ? failure : inner_->set(k, v, fl, e);
  }
  S add(std::string_view k, std::string_view v, std::uint32_t fl, cacheaside::Exptime e) override {
    ++adds;
    return fail || fail_writes ? failure : inner_->add(k, v, fl, e);
  }
  S cas(std::string_view k, std::string_view v, std::uint32_t fl, cacheaside::Exptime e,
        std::uint64_t c) override {
    ++cases;
    return fail || fail_writes ? failure : inner_->cas(k, v, fl, e, c);
  }
  S remove(std::string_view k) override {
    ++removes;
    return fail ? failure : inner_->remove(k);
  }
  S incr(std::string_view k, std::uint64_t d, std::uint64_t init, cacheaside::Exptime e,
         std::uint64_t& v) override {
    ++incrs;
    return fail ? failure : inner_->incr(k, d, init, e, v);
  }

 private:
  std::shared_ptr<cacheaside::Store> inner_;
};

}  // namespace cacheaside_test
