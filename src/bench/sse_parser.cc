#include "bench/sse_parser.h"

namespace gpufrac::bench {

void SseParser::Feed(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) {
      line_.append(bytes.substr(pos));
      return;
    }
    if (line_.empty()) {
      OnLine(bytes.substr(pos, nl - pos));  // the common case: no copy
    } else {
      line_.append(bytes.substr(pos, nl - pos));
      OnLine(line_);
      line_.clear();
    }
    pos = nl + 1;
  }
}

void SseParser::OnLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    Dispatch();
    return;
  }
  if (line.front() == ':') {
    ++comments_;
    return;
  }
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) pending_.data.push_back('\n');
    pending_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    pending_.event = std::string(value);
  }  // "id" and "retry" do not matter to a load generator
}

void SseParser::Dispatch() {
  if (has_data_) on_event_(pending_);
  pending_.data.clear();
  pending_.event.clear();
  has_data_ = false;
}

void SseParser::Finish() {
  if (!line_.empty()) {
    std::string line = std::move(line_);
    line_.clear();
    OnLine(line);
  }
  Dispatch();
}

}  // namespace gpufrac::bench
