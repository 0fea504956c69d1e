// What the cache did for the request being handled, for its log line.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace user_service {

/// One request's trace: "hit user_5", "invalidate user_4 users_all".
class RequestTrace {
 public:
  void add(const char* what, std::string_view key) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& seen : seen_)  // two callers of one key both hear of its miss: once
      if (seen.first == what && seen.second == key) return;
    seen_.emplace_back(what, std::string(key));
    if (last_ != what) {  // "invalidate user_4 users_all", not the verb twice
      if (!text_.empty()) text_ += ' ';
      text_ += what;
      last_ = what;
    }
    text_ += ' ';
    text_ += key;
  }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }

 private:
  std::mutex mu_;
  std::string text_;
  const char* last_ = nullptr;
  std::vector<std::pair<const char*, std::string>> seen_;
};

/// The traces waiting on each memcached key. An async cache reports its events on
/// whichever io thread runs the call's step, not on the request's stack, so a request
/// says which keys it is asking about (TraceScope) and hears the events of those keys
/// while it waits. Nothing is registered when the service does not log.
class TraceBoard {
 public:
  static TraceBoard& instance() {
    static TraceBoard board;
    return board;
  }
  void watch(const std::string& key, RequestTrace* t) {
    std::lock_guard<std::mutex> lock(mu_);
    by_key_.emplace(key, t);
  }
  void unwatch(const std::string& key, RequestTrace* t) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [b, e] = by_key_.equal_range(key);
    for (auto it = b; it != e; ++it)
      if (it->second == t) {
        by_key_.erase(it);
        return;
      }
  }
  /// From the caches' on_event.
  void add(const char* what, std::string_view key) {
    std::lock_guard<std::mutex> lock(mu_);
    if (by_key_.empty()) return;
    auto [b, e] = by_key_.equal_range(std::string(key));
    for (auto it = b; it != e; ++it) it->second->add(what, key);
  }

 private:
  std::mutex mu_;
  std::unordered_multimap<std::string, RequestTrace*> by_key_;
};

/// Registers `trace` for `keys` while in scope; a null trace registers nothing.
class TraceScope {
 public:
  TraceScope(RequestTrace* trace, std::vector<std::string> keys)
      : trace_(trace), keys_(std::move(keys)) {
    if (trace_)
      for (const auto& k : keys_) TraceBoard::instance().watch(k, trace_);
  }
  ~TraceScope() {
    if (trace_)
      for (const auto& k : keys_) TraceBoard::instance().unwatch(k, trace_);
  }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  RequestTrace* trace_;
  std::vector<std::string> keys_;
};

}  // namespace user_service
