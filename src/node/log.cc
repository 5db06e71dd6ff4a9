#include "node/log.h"

#include <sys/time.h>

#include <cstdio>
#include <ctime>
#include <mutex>

namespace gpufrac::node {
namespace {

// Values with spaces, quotes or '=' are quoted so that each line stays machine-readable.
std::string Quote(const std::string& v) {
  if (!v.empty() && v.find_first_of(" \"=\t\n") == std::string::npos) return v;
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
  char ts[64];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
           utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(tv.tv_usec / 1000));
  std::string line = std::string("ts=") + ts + " event=" + event;
  for (const auto& [k, v] : fields) line += " " + k + "=" + Quote(v);
  line += "\n";
  static std::mutex mu;
  std::lock_guard lock(mu);
  fputs(line.c_str(), stderr);
  fflush(stderr);
}

}  // namespace gpufrac::node
