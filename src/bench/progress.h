// A live progress line on stderr for long runs: elapsed time, a bar when the end is known,
// completions, request rate and TTFT median over the last interval, requests in flight, errors.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/record.h"

namespace gpufrac::bench {

struct Workload;

class ProgressLine {
 public:
  static constexpr int64_t kIntervalNs = 1'000'000'000;
  ProgressLine(const std::vector<Workload>& workloads, const std::vector<RequestRecord>* records);
  void Update(int64_t elapsed_ns, size_t in_flight);
  void Finish(int64_t elapsed_ns);

 private:
  const std::vector<RequestRecord>* records_;
  double planned_s_ = 0;          // expected run length when bounded by duration, else 0
  int64_t planned_requests_ = 0;  // expected request count when bounded by count, else 0
  size_t seen_ = 0;
  size_t errors_ = 0;
  int64_t last_elapsed_ns_ = 0;
};

}  // namespace gpufrac::bench
