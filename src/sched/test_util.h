// Helpers for the scheduler's tests: small clusters and workloads in one line each.
#pragma once

#include <string>

#include "sched/cluster_state.h"
#include "sched/scheduler.h"

namespace gpufrac::sched::testing {

constexpr uint64_t kGiB = 1ull << 30;

inline NodeSpec Node(const std::string& name, int gpus, uint64_t gpu_memory = 80 * kGiB,
                     const std::string& type = "H100") {
  NodeSpec n;
  n.name = name;
  n.gpu_type = type;
  n.gpu_memory_bytes = gpu_memory;
  n.gpu_count = gpus;
  n.cpu_milli = 64000;
  n.memory_bytes = 512 * kGiB;
  return n;
}

inline QueueSpec Queue(const std::string& name, double deserved_gpu, double weight = 1,
                       QueueId parent = kNone) {
  QueueSpec q;
  q.name = name;
  q.parent = parent;
  q.deserved[Resource::kGpu] = deserved_gpu;
  q.over_quota_weight = weight;
  return q;
}

inline WorkloadSpec Fraction(const std::string& name, QueueId queue, double portion,
                             int priority = 50, bool preemptible = true) {
  WorkloadSpec w;
  w.name = name;
  w.queue = queue;
  w.priority = priority;
  w.preemptible = preemptible;
  w.gpu.kind = GpuRequestKind::kPortion;
  w.gpu.portion_milli = static_cast<int64_t>(portion * kMilliPerGpu + 0.5);
  w.gpu.portion_limit = w.gpu.portion_milli;
  w.cpu_milli = 1000;
  w.memory_bytes = kGiB;
  return w;
}

inline WorkloadSpec Whole(const std::string& name, QueueId queue, int count, int priority = 50,
                          bool preemptible = true) {
  WorkloadSpec w = Fraction(name, queue, 1, priority, preemptible);
  w.gpu.kind = GpuRequestKind::kWhole;
  w.gpu.count = count;
  w.gpu.portion_milli = 0;
  return w;
}

inline SchedulerConfig CheckedConfig() {
  SchedulerConfig c;
  c.check_invariants = true;
  return c;
}

// Node name and GPU index (within the node) of a bound fraction, e.g. "n1/0".
inline std::string Where(const ClusterState& s, WorkloadId id) {
  const WorkloadState& w = s.workload(id);
  if (w.status != WorkloadStatus::kBound) return "pending";
  const NodeState& node = s.node(w.placement.node);
  std::string out = node.spec.name;
  for (const GpuSlice& slice : w.placement.slices) {
    out += "/" + std::to_string(slice.gpu - node.first_gpu);
  }
  return out;
}

}  // namespace gpufrac::sched::testing
