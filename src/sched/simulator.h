// The event-driven simulator around the scheduler core: it replays a scenario's arrivals (trace
// and generator), runs a scheduling cycle every cycle_interval of simulated time, starts and
// finishes workloads as the decisions say, and measures what the issue asks for: GPU allocation
// and stranded capacity over time, queue waits, fair-share deviation, evictions, unschedulable
// counts and the core's own cycle times.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "sched/scenario.h"

namespace gpufrac::sched {

struct SimSample {
  double time = 0;
  double gpu_allocated = 0;   // share of all GPU compute that is allocated
  double stranded = 0;        // share of all GPU memory free on GPUs no pending workload fits
  double ffd_gpus_ratio = 0;  // GPUs in use / GPUs a first-fit-decreasing packing would use
  int whole_free_gpus = 0;
  int partial_gpus = 0;
  size_t pending = 0;
  size_t running = 0;
  std::vector<double> queue_gpu;       // per leaf queue, allocated GPUs
  std::vector<double> queue_fair_gpu;  // per leaf queue, fair share of GPUs
};

struct WaitStats {
  int count = 0;  // workloads that started
  double mean = 0;
  double p50 = 0;
  double p95 = 0;
  double max = 0;
  int never_started = 0;
};

struct SimReport {
  std::string scenario;
  double simulated_seconds = 0;
  int cycles = 0;
  int nodes = 0;
  int gpus = 0;
  int arrivals = 0;
  int completed = 0;
  int binds = 0;
  std::map<std::string, int> evictions_by_action;
  int unschedulable_decisions = 0;
  int unschedulable_workloads = 0;  // distinct workloads told "unschedulable" at least once
  size_t pending_at_end = 0;
  std::vector<std::string> leaf_queues;
  std::vector<SimSample> samples;
  std::map<std::string, WaitStats> waits_by_queue;
  std::map<std::string, WaitStats> waits_by_priority;
  std::map<std::string, WaitStats> waits_by_queue_priority;  // "queue/priority-class"
  // Steady state (samples after warmup).
  double mean_gpu_allocated = 0;
  double mean_stranded = 0;
  double max_stranded = 0;
  double mean_ffd_gpus_ratio = 0;
  double fair_share_deviation = 0;      // mean over samples of max_q |alloc - fair| / fair
  double fair_share_deviation_abs = 0;  // same, in share of all GPUs
  // The core's cycle times, milliseconds.
  double cycle_ms_mean = 0;
  double cycle_ms_p50 = 0;
  double cycle_ms_p99 = 0;
  double cycle_ms_max = 0;
  int invariant_failures = 0;
  std::string first_invariant_failure;
};

// Called with every decision as it is applied, at simulated time `t` (for decision logs).
using DecisionSink =
    std::function<void(double t, const ClusterState& state, const Decision& decision)>;

// Runs the scenario to its end. Fails only when the scenario cannot be set up (a bound workload
// that does not fit); invariant failures are counted in the report.
Status RunSimulation(const Scenario& scenario, SimReport* report,
                     const DecisionSink& sink = nullptr);

// The generator's arrivals for a scenario (deterministic for a seed), merged with its trace and
// sorted by arrival. Generated gangs are appended to *gangs.
std::vector<TraceEntry> ExpandWorkload(const Scenario& scenario, std::vector<GangEntry>* gangs);

}  // namespace gpufrac::sched
