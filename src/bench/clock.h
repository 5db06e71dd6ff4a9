// One clock for every timestamp gpufrac bench takes: CLOCK_MONOTONIC in nanoseconds. The synthetic
// server uses the same clock, so client and server timestamps on one host compare directly.
#pragma once

#include <time.h>

#include <cstdint>

namespace gpufrac::bench {

inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace gpufrac::bench
