// Fair share, computed top-down each cycle. At every level of the queue tree the parent's share
// of each resource is divided among its children in two rounds: first each child gets its
// deserved quota (capped by what it asks for), then what is left goes to children that still want
// more, in proportion to their over-quota weights (water-filling, so no child gets more than it
// asks for or than its limit). The root's share is the cluster's capacity.
#pragma once

#include <vector>

#include "sched/cluster_state.h"

namespace gpufrac::sched {

// One child's claim on its parent's share of a single resource.
struct ShareClaim {
  double deserved = 0;
  double weight = 1;
  double demand = 0;  // already capped by the child's limit
};

// Divides `amount` among `claims` (quota first, then by weight); result[i] <= claims[i].demand.
std::vector<double> DivideShare(double amount, const std::vector<ShareClaim>& claims);

struct FairShare {
  std::vector<ResourceVec> share;   // per queue
  std::vector<ResourceVec> demand;  // per queue: allocated + pending, capped by the limit
};

FairShare ComputeFairShare(const ClusterState& state);

// How saturated a queue is: the largest ratio allocated / fair share over resources it has a
// share of (the dominant resource). Queues are served lowest first; a queue with demand but no
// share sorts last.
double SaturationRatio(const ResourceVec& allocated, const ResourceVec& share);

// What a pending workload adds to its queue's demand.
ResourceVec DemandOf(const WorkloadState& workload);

}  // namespace gpufrac::sched
