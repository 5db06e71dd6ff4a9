#include "serve/content_scan.h"

namespace gpufrac::serve {

bool HasContent(std::string_view data) {
  static constexpr std::string_view kKeys[] = {"\"content\"", "\"text\"", "\"reasoning_content\"",
                                               "\"reasoning\""};
  for (std::string_view key : kKeys) {
    for (size_t pos = data.find(key); pos != std::string_view::npos; pos = data.find(key, pos)) {
      pos += key.size();
      size_t i = pos;
      while (i < data.size() && data[i] == ' ') ++i;
      if (i >= data.size() || data[i] != ':') continue;
      ++i;
      while (i < data.size() && data[i] == ' ') ++i;
      if (i + 1 < data.size() && data[i] == '"' && data[i + 1] != '"') return true;
    }
  }
  return false;
}

}  // namespace gpufrac::serve
