// Incremental Server-Sent Events parser (the text/event-stream format): bytes in, complete events
// out. An event ends at a blank line; "data:" lines are joined with '\n'; lines starting with ':'
// are comments (servers send them as keep-alives) and never make an event on their own.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace gpufrac::bench {

struct SseEvent {
  std::string event;  // the "event:" field, empty when absent
  std::string data;
};

class SseParser {
 public:
  using EventCallback = std::function<void(const SseEvent&)>;
  explicit SseParser(EventCallback on_event) : on_event_(std::move(on_event)) {}

  void Feed(std::string_view bytes);
  // End of stream: an event not terminated by a blank line is dispatched (lenient, like
  // browsers are not, because some servers end the last event with a single newline).
  void Finish();
  size_t comments() const { return comments_; }
  // Whether the bytes fed so far end an event (or a comment): nothing is pending.
  bool between_events() const {
    return line_.empty() && !has_data_ && pending_.event.empty() && pending_.data.empty();
  }

 private:
  void OnLine(std::string_view line);
  void Dispatch();

  EventCallback on_event_;
  std::string line_;
  SseEvent pending_;
  bool has_data_ = false;
  size_t comments_ = 0;
};

}  // namespace gpufrac::bench
