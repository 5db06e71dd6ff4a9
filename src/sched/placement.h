// Where one workload can go right now. Bin-packing by default: a fraction goes to the partly used
// GPU with the least room that still fits it (best fit), and only then to a whole free GPU on the
// node with the fewest free GPUs, so whole GPUs and whole nodes stay free. Spread does the
// opposite. Lookups use the pools' ordered indexes, so a decision costs O(log GPUs) when the
// first candidate fits.
#pragma once

#include <optional>
#include <string>

#include "sched/cluster_state.h"

namespace gpufrac::sched {

struct PlacementQuery {
  NodeId only_node = kNone;  // restrict the search to one node (used after evictions)
  // Restrict the search to nodes whose label `domain_key` has value `domain_value` (gangs kept
  // within one topology domain, such as a rack). Empty key: no restriction.
  std::string domain_key;
  std::string domain_value;
};

// A placement for pending workload `id`, or nullopt with *reason saying what it lacks and where.
std::optional<Placement> FindPlacement(const ClusterState& state, WorkloadId id,
                                       const PlacementQuery& query, std::string* reason);

// Whether `node` matches the workload's GPU type, node selector and node CPU/memory needs.
bool NodeMatches(const ClusterState& state, const WorkloadSpec& spec, NodeId node);
bool NodeHasRoom(const ClusterState& state, const WorkloadSpec& spec, NodeId node);

// A human phrase for a GPU request: "0.50 GPU", "2 GPUs", "20.0GiB of GPU memory".
std::string DescribeRequest(const WorkloadSpec& spec);

}  // namespace gpufrac::sched
