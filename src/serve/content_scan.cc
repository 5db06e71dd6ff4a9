#include "serve/content_scan.h"

namespace gpufrac::serve {

namespace {

// Whether `key` appears as a JSON key whose value is a string (non-empty unless `empty_counts`).
bool HasStringValue(std::string_view data, std::string_view key, bool empty_counts) {
  for (size_t pos = data.find(key); pos != std::string_view::npos; pos = data.find(key, pos)) {
    pos += key.size();
    size_t i = pos;
    while (i < data.size() && data[i] == ' ') ++i;
    if (i >= data.size() || data[i] != ':') continue;
    ++i;
    while (i < data.size() && data[i] == ' ') ++i;
    if (i + 1 < data.size() && data[i] == '"' && (empty_counts || data[i + 1] != '"')) return true;
  }
  return false;
}

}  // namespace

bool HasContent(std::string_view data) {
  static constexpr std::string_view kKeys[] = {"\"content\"", "\"text\"", "\"reasoning_content\"",
                                               "\"reasoning\""};
  for (std::string_view key : kKeys) {
    if (HasStringValue(data, key, false)) return true;
  }
  return false;
}

bool EndsStream(std::string_view data) {
  return data == "[DONE]" || HasStringValue(data, "\"finish_reason\"", true);
}

}  // namespace gpufrac::serve
