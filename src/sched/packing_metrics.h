// Packing quality of a cluster state, shared by the simulator and the benchmarks.
#pragma once

#include "sched/cluster_state.h"

namespace gpufrac::sched {

// Share of all GPU memory that is free on GPUs no pending workload's GPU shape fits (only GPU
// size is looked at, not selectors or node CPU). Zero when nothing is pending.
double StrandedShare(const ClusterState& state);

// GPUs in use divided by the GPUs first-fit-decreasing needs for the same running workloads,
// per pool (1.0: as tight as FFD; below 1 is possible, FFD not being optimal).
double FfdRatio(const ClusterState& state);

}  // namespace gpufrac::sched
