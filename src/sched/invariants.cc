#include "sched/invariants.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

namespace gpufrac::sched {
namespace {

constexpr double kQuotaEpsilon = 1e-6;

Status Fail(const std::string& what) { return Status::Error("invariant broken: " + what); }

}  // namespace

Status CheckInvariants(const ClusterState& state) {
  std::vector<int64_t> gpu_milli(state.gpu_count(), 0);
  std::vector<uint64_t> gpu_memory(state.gpu_count(), 0);
  std::vector<int> gpu_tenancies(state.gpu_count(), 0);
  std::vector<int64_t> node_cpu(state.node_count(), 0);
  std::vector<uint64_t> node_memory(state.node_count(), 0);
  std::vector<ResourceVec> queue_alloc(state.queue_count());
  for (WorkloadId id = 0; id < state.workload_count(); ++id) {
    const WorkloadState& w = state.workload(id);
    if (w.status != WorkloadStatus::kBound) continue;
    const NodeId node = w.placement.node;
    if (node < 0 || node >= state.node_count()) return Fail(w.spec.name + " bound to no node");
    node_cpu[node] += w.spec.cpu_milli;
    node_memory[node] += w.spec.memory_bytes;
    int on_node = 0;
    for (WorkloadId t : state.node(node).tenants) on_node += t == id;
    if (on_node != 1)
      return Fail(w.spec.name + " is listed " + std::to_string(on_node) + " times on its node");
    if (w.spec.gpu.kind == GpuRequestKind::kWhole &&
        static_cast<int>(w.placement.slices.size()) != w.spec.gpu.count) {
      return Fail(w.spec.name + " holds the wrong number of GPUs");
    }
    for (const GpuSlice& s : w.placement.slices) {
      if (state.gpu(s.gpu).node != node) return Fail(w.spec.name + " holds a GPU of another node");
      gpu_milli[s.gpu] += s.milli;
      gpu_memory[s.gpu] += s.memory;
      ++gpu_tenancies[s.gpu];
    }
    const ResourceVec charge = state.ChargeOf(w.spec, w.placement);
    for (QueueId q = w.spec.queue; q != kNone; q = state.queue(q).spec.parent) {
      queue_alloc[q] += charge;
    }
  }
  for (int32_t g = 0; g < state.gpu_count(); ++g) {
    const GpuState& gpu = state.gpu(g);
    const std::string name =
        "GPU " + std::to_string(g) + " of node '" + state.node(gpu.node).spec.name + "'";
    if (gpu_milli[g] > kMilliPerGpu) return Fail(name + " compute over-committed");
    if (gpu_memory[g] > gpu.memory) return Fail(name + " memory over-committed");
    if (gpu.free_milli != kMilliPerGpu - gpu_milli[g] ||
        gpu.free_memory != gpu.memory - gpu_memory[g]) {
      return Fail(name + " free counters disagree with its tenants");
    }
    if (static_cast<int>(gpu.tenants.size()) != gpu_tenancies[g]) {
      return Fail(name + " tenant list disagrees with placements");
    }
  }
  for (NodeId n = 0; n < state.node_count(); ++n) {
    const NodeState& node = state.node(n);
    if (node_cpu[n] > node.spec.cpu_milli)
      return Fail("node '" + node.spec.name + "' CPU over-committed");
    if (node_memory[n] > node.spec.memory_bytes) {
      return Fail("node '" + node.spec.name + "' memory over-committed");
    }
    int whole_free = 0;
    for (int i = 0; i < node.spec.gpu_count; ++i)
      whole_free += state.gpu(node.first_gpu + i).IsWholeFree();
    if (whole_free != node.free_whole_gpus)
      return Fail("node '" + node.spec.name + "' free GPU count is stale");
  }
  for (QueueId q = 0; q < state.queue_count(); ++q) {
    const QueueState& queue = state.queue(q);
    for (int r = 0; r < kResourceCount; ++r) {
      if (queue_alloc[q].value[r] > queue.spec.limit.value[r] + kQuotaEpsilon) {
        return Fail("queue '" + queue.spec.name + "' over its " +
                    ResourceName(static_cast<Resource>(r)) + " limit");
      }
      if (std::abs(queue_alloc[q].value[r] - queue.allocated.value[r]) >
          kQuotaEpsilon * std::max(1.0, std::abs(queue_alloc[q].value[r]))) {
        return Fail("queue '" + queue.spec.name + "' allocation counter is stale");
      }
    }
  }
  for (GangId g = 0; g < state.gang_count(); ++g) {
    const GangSpec& gang = state.gang(g);
    int bound = 0;
    int finished = 0;  // members that ran and completed still count towards the gang
    for (WorkloadId m : gang.members) {
      bound += state.workload(m).status == WorkloadStatus::kBound;
      finished += state.workload(m).status == WorkloadStatus::kRemoved;
    }
    std::set<std::string> domains;
    for (WorkloadId m : gang.members) {
      if (gang.topology_key.empty() || state.workload(m).status != WorkloadStatus::kBound) continue;
      const auto& labels = state.node(state.workload(m).placement.node).spec.labels;
      auto it = labels.find(gang.topology_key);
      domains.insert(it == labels.end() ? "" : it->second);
    }
    if (domains.size() > 1) {
      return Fail("gang '" + gang.name + "' spans several '" + gang.topology_key + "' domains");
    }
    if (bound > 0 && bound + finished < gang.min_members) {
      return Fail("gang '" + gang.name + "' has " + std::to_string(bound) + " of min " +
                  std::to_string(gang.min_members) + " members bound");
    }
  }
  return Status::Ok();
}

}  // namespace gpufrac::sched
