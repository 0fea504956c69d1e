// What the cache did for the request being handled, for its log line.
#pragma once

#include <string>
#include <string_view>

namespace user_service {

/// Filled from cacheaside events (they run in the calling thread) while a request is
/// traced: `begin()` when it arrives, `end()` when its log line is written. Outside
/// that window nothing is kept, so a service that logs nothing collects nothing.
class RequestTrace {
 public:
  /// This thread's trace.
  static RequestTrace& current() {
    thread_local RequestTrace t;
    return t;
  }

  void begin() {
    text_.clear();
    last_ = nullptr;
    active_ = true;
  }
  /// The text so far ("hit user_5", "invalidate user_4 users_all"), and stops tracing.
  std::string end() {
    active_ = false;
    std::string t;
    t.swap(text_);
    return t;
  }
  void add(const char* what, std::string_view key) {
    if (!active_) return;
    if (last_ != what) {  // "invalidate user_4 users_all", not the verb twice
      if (!text_.empty()) text_ += ' ';
      text_ += what;
      last_ = what;
    }
    text_ += ' ';
    text_ += key;
  }

 private:
  std::string text_;
  const char* last_ = nullptr;
  bool active_ = false;
};

}  // namespace user_service
