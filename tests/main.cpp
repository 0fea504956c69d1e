#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "support/checked_cache.hpp"
#include "support/store_choice.hpp"

namespace {

// The suite runs twice, over MemcachedStore and over MetaStore (CACHEASIDE_TEST_STORE=meta).
// A test that never asks which store to use would only repeat itself: it is tagged
// [nostore] and runs once. This checks the tag both ways, so it stays true.
class StoreChoiceCheck : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(const Catch::TestCaseInfo&) override {
    before_ = cacheaside_test::store_choices.load();
  }

  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    const Catch::TestCaseInfo& t = stats.testInfo;
    bool used = cacheaside_test::store_choices.load() != before_;
    bool nostore = has_tag(t, "nostore");
    const char* problem = nullptr;
    if (nostore && used) problem = "is tagged [nostore] but chooses a store";
    if (!nostore && !used && cacheaside_test::meta_store() && !has_tag(t, "meta"))
      problem = "never chooses a store: tag it [nostore] so it runs once";
    if (!problem) return;
    std::fprintf(stderr, "test '%s' %s\n", t.name.c_str(), problem);
    std::fflush(stderr);
    std::_Exit(3);
  }

 private:
  static bool has_tag(const Catch::TestCaseInfo& t, const std::string& tag) {
    for (const auto& x : t.tags)
      if (x == tag) return true;
    return false;
  }

  long before_ = 0;
};

}  // namespace

// After every test, each cache it made went with nothing in flight and nothing
// pending (checked as each goes: support/checked_cache.hpp), unless the test is
// tagged [unfinished].
class LeftoverCheckListener : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(const Catch::TestCaseInfo& t) override {
    auto& c = cacheaside_test::leftover_check();
    bool unfinished = false;
    for (const auto& x : t.tags) unfinished = unfinished || x == "unfinished";
    c.enforced = !unfinished;
    std::lock_guard<std::mutex> lock(c.mu);
    c.breach.clear();
  }

  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    auto& c = cacheaside_test::leftover_check();
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.breach.empty()) return;
    std::fprintf(stderr, "test '%s': %s (tag it [unfinished] if it means to)\n",
                 stats.testInfo.name.c_str(), c.breach.c_str());
    std::fflush(stderr);
    std::_Exit(4);
  }
};

CATCH_REGISTER_LISTENER(StoreChoiceCheck)
CATCH_REGISTER_LISTENER(LeftoverCheckListener)
