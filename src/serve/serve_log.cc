#include "serve/serve_log.h"

#include <sys/time.h>

#include <cstdio>
#include <ctime>

namespace gpufrac::serve {
namespace {

bool NeedsQuotes(const std::string& v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n') return true;
  }
  return false;
}

std::string Quote(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

}  // namespace

void LogEvent(const std::string& event, const LogFields& fields) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm utc;
  gmtime_r(&tv.tv_sec, &utc);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line = "ts=" + std::string(ts) + "." +
                     std::to_string(1000 + tv.tv_usec / 1000).substr(1) + "Z event=" + event;
  for (const auto& [key, value] : fields) {
    line += " " + key + "=" + (NeedsQuotes(value) ? Quote(value) : value);
  }
  line += "\n";
  std::fputs(line.c_str(), stderr);
}

}  // namespace gpufrac::serve
