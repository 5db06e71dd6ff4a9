// Fair share, computed top-down each cycle. At every level of the queue tree the parent's share
// of each resource is divided among its children in two rounds: first each child gets its
// deserved quota (capped by what it asks for), then what is left goes to children that still want
// more, in proportion to their over-quota weights (water-filling, so no child gets more than it
// asks for or than its limit). The root's share is the cluster's capacity.
#pragma once

#include <array>
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

// Which resources count towards a queue's saturation.
using ResourceMask = std::array<bool, kResourceCount>;
constexpr ResourceMask kAllResources = {true, true, true};

struct FairShare {
  std::vector<ResourceVec> share;   // per queue
  std::vector<ResourceVec> demand;  // per queue: allocated + pending, capped by the limit
  // Per queue: the resources it can ever hold a share of (a deserved quota, or an over-quota
  // weight, in a parent that can). A weight-0 queue with a GPU quota and no CPU quota never gets
  // a CPU share, so its CPU use must not make it look infinitely saturated.
  std::vector<ResourceMask> entitled;
};

FairShare ComputeFairShare(const ClusterState& state);

// How saturated a queue is: the largest ratio allocated / fair share over the resources in
// `counted` (the dominant resource). Queues are served lowest first; a queue with demand but no
// share sorts last. A queue that holds only resources outside `counted` is infinitely saturated:
// it has no share of what it uses.
double SaturationRatio(const ResourceVec& allocated, const ResourceVec& share,
                       const ResourceMask& counted = kAllResources);

// SaturationRatio of queue `q` holding `allocated`, over the resources it is entitled to.
double QueueSaturation(const FairShare& fs, QueueId q, const ResourceVec& allocated);

// What a pending workload adds to its queue's demand.
ResourceVec DemandOf(const WorkloadState& workload);

}  // namespace gpufrac::sched
