// Invariants every cycle must keep, recomputed from scratch (not from the cached counters, which
// they also verify): no GPU's compute or memory over-committed, no node's CPU or memory
// over-committed, no queue over its limit, gangs all-or-nothing, no workload bound twice.
#pragma once

#include "common/status.h"
#include "sched/cluster_state.h"

namespace gpufrac::sched {

Status CheckInvariants(const ClusterState& state);

}  // namespace gpufrac::sched
