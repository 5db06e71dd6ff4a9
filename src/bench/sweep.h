// Sweeps over concurrencies or request rates, and the SLA search: the largest concurrency (or
// rate) at which every SLO holds, found by doubling from a start value until an SLO fails, then
// bisecting between the last pass and the first failure until they are `precision` apart.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "bench/loadgen.h"
#include "bench/report.h"

namespace gpufrac::bench {

enum class Axis { kConcurrency, kRate };
const char* AxisName(Axis axis);

// A copy of the workloads with the axis set to value (closed loop for concurrency, open loop for
// rate).
std::vector<Workload> AtPoint(const std::vector<Workload>& workloads, Axis axis, double value);

struct SlaSearchSpec {
  double start = 1;
  double max = 1024;
  double precision = 1;  // stop when pass and fail are this close
  bool integer = true;   // concurrency: probe whole numbers only
};

struct SlaProbe {
  double value = 0;
  bool passed = false;
};

struct SlaSearchResult {
  bool found = false;        // false: the SLOs fail even at the start value
  double best = 0;           // the largest value that passed
  double first_failure = 0;  // 0 when even max passed
  std::vector<SlaProbe> probes;
};

// The search itself, over any pass/fail probe (tests drive it with a pure function).
SlaSearchResult SearchLargestPassing(const SlaSearchSpec& spec,
                                     const std::function<bool(double)>& passes);

// Writes sweep data and a gnuplot script into dir and runs gnuplot when it is installed:
// ttft.svg (TTFT p50/p95/p99 against the axis) and throughput.svg. Returns a note on what happened.
std::string WritePlots(const std::string& dir, const std::vector<RunReport>& reports);

}  // namespace gpufrac::bench
