// Turning a parsed scenario into scheduler state: the cluster and queues, and trace entries as
// workloads (bound from the start when the scenario pins them).
#include <cstdio>
#include <set>

#include "sched/scenario.h"

namespace gpufrac::sched {
namespace {

// Rounding noise from adding up fractions, as in the scheduler's own quota check.
constexpr double kLimitEpsilon = 1e-6;

// Empty when charging `charge` keeps the queue and its ancestors within their limits; else why
// not. A pinned workload must not break what the scheduler's invariants hold it to.
std::string CheckLimits(const ClusterState& state, QueueId queue, const ResourceVec& charge) {
  for (QueueId q = queue; q != kNone; q = state.queue(q).spec.parent) {
    const QueueState& qs = state.queue(q);
    for (int r = 0; r < kResourceCount; ++r) {
      const double after = qs.allocated.value[r] + charge.value[r];
      if (charge.value[r] > 0 && after > qs.spec.limit.value[r] + kLimitEpsilon) {
        char buf[192];
        std::snprintf(buf, sizeof(buf), "would put queue '%s' over its %s limit (%.3f > %.3f)",
                      qs.spec.name.c_str(), ResourceName(static_cast<Resource>(r)), after,
                      qs.spec.limit.value[r]);
        return buf;
      }
    }
  }
  return "";
}

}  // namespace

ClusterState BuildClusterState(const Scenario& scenario) {
  ClusterState state;
  for (const NodeSpec& node : scenario.nodes) state.AddNode(node);
  for (const QueueSpec& q : scenario.queues) {
    QueueSpec copy = q;
    copy.children.clear();  // AddQueue links children to parents itself
    state.AddQueue(std::move(copy));
  }
  for (const GangEntry& g : scenario.gangs) state.AddGang(g.name, g.min_members, g.topology_key);
  return state;
}

bool AddTraceEntry(ClusterState* state, const TraceEntry& entry, WorkloadId* id,
                   std::string* error) {
  *id = state->AddWorkload(entry.spec);
  if (entry.bound_node.empty()) return true;
  const NodeId node = state->FindNode(entry.bound_node);
  if (node == kNone) {
    *error = "workload '" + entry.spec.name + "': unknown node '" + entry.bound_node + "'";
    return false;
  }
  const NodeState& n = state->node(node);
  Placement placement{node, {}};
  std::set<int> chosen;
  for (int index : entry.bound_gpus) {
    if (index >= n.spec.gpu_count) {
      *error = "workload '" + entry.spec.name + "': node '" + n.spec.name + "' has no GPU " +
               std::to_string(index);
      return false;
    }
    // The checks below see the GPU as it was before this workload; twice would over-commit it.
    if (!chosen.insert(index).second) {
      *error = "workload '" + entry.spec.name + "': gpu_index lists GPU " + std::to_string(index) +
               " twice";
      return false;
    }
    const int32_t g = n.first_gpu + index;
    GpuSlice slice{g, kMilliPerGpu, state->gpu(g).memory};
    if (entry.spec.gpu.IsFraction() &&
        !state->FractionNeed(entry.spec.gpu, n.pool, &slice.milli, &slice.memory)) {
      *error =
          "workload '" + entry.spec.name + "': does not fit a GPU of node '" + n.spec.name + "'";
      return false;
    }
    const GpuState& gpu = state->gpu(g);
    if (gpu.free_milli < slice.milli || gpu.free_memory < slice.memory) {
      *error = "workload '" + entry.spec.name + "': GPU " + std::to_string(index) + " of node '" +
               n.spec.name + "' is already full";
      return false;
    }
    placement.slices.push_back(slice);
  }
  const bool whole = entry.spec.gpu.kind == GpuRequestKind::kWhole;
  if ((whole && static_cast<int>(placement.slices.size()) != entry.spec.gpu.count) ||
      (entry.spec.gpu.IsFraction() && placement.slices.size() != 1)) {
    *error = "workload '" + entry.spec.name + "': gpu_index lists the wrong number of GPUs";
    return false;
  }
  if (n.free_cpu_milli < entry.spec.cpu_milli || n.free_memory < entry.spec.memory_bytes) {
    *error = "workload '" + entry.spec.name + "': node '" + n.spec.name + "' lacks CPU or memory";
    return false;
  }
  const std::string over =
      CheckLimits(*state, entry.spec.queue, state->ChargeOf(entry.spec, placement));
  if (!over.empty()) {
    *error = "workload '" + entry.spec.name + "': " + over;
    return false;
  }
  state->Bind(*id, placement);
  state->Commit();
  return true;
}

}  // namespace gpufrac::sched
