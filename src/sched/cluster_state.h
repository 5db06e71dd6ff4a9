// The scheduler's working state: what is bound where, what each GPU, node and queue has left, and
// the indexes that make placement O(log n). It is incremental (kept across cycles, changed by
// arrivals and completions) and transactional: every Bind/Unbind is logged, so an action can try
// a whole scenario (a gang, a set of evictions) and roll it back when any step fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sched/model.h"

namespace gpufrac::sched {

// A piece of one GPU given to a workload (a whole card is kMilliPerGpu and all its memory).
struct GpuSlice {
  int32_t gpu = kNone;  // global GPU index
  int64_t milli = 0;
  uint64_t memory = 0;
};

struct Placement {
  NodeId node = kNone;
  std::vector<GpuSlice> slices;
};

enum class WorkloadStatus { kPending, kBound, kRemoved };

struct WorkloadState {
  WorkloadSpec spec;
  WorkloadStatus status = WorkloadStatus::kPending;
  Placement placement;
  int64_t sequence = 0;  // arrival order; older first among equals
  double gpu_units = 0;  // GPUs asked for, in cards, for demand and quota checks
};

struct GpuState {
  NodeId node = kNone;
  int32_t pool = kNone;  // GPUs alike in type and memory share a pool
  int64_t free_milli = kMilliPerGpu;
  uint64_t free_memory = 0;
  uint64_t memory = 0;
  std::vector<WorkloadId> tenants;
  bool IsWholeFree() const { return free_milli == kMilliPerGpu && free_memory == memory; }
};

struct NodeState {
  NodeSpec spec;
  int32_t pool = kNone;
  int32_t first_gpu = 0;
  int64_t free_cpu_milli = 0;
  uint64_t free_memory = 0;
  int free_whole_gpus = 0;
  std::vector<WorkloadId> tenants;
};

struct QueueState {
  QueueSpec spec;
  ResourceVec allocated;                  // this queue and its descendants
  ResourceVec allocated_non_preemptible;  // part of allocated that cannot be evicted
  bool IsLeaf() const { return spec.children.empty(); }
};

// Pending workloads of a queue in the order allocate visits them: higher priority first, then
// older first.
struct PendingKey {
  int priority;
  int64_t sequence;
  WorkloadId id;
  bool operator<(const PendingKey& o) const {
    if (priority != o.priority) return priority > o.priority;
    if (sequence != o.sequence) return sequence < o.sequence;
    return id < o.id;
  }
};

// Running workloads of a queue, cheapest victim first: lowest priority, then newest.
struct RunningKey {
  int priority;
  int64_t sequence;
  WorkloadId id;
  bool operator<(const RunningKey& o) const {
    if (priority != o.priority) return priority < o.priority;
    if (sequence != o.sequence) return sequence > o.sequence;
    return id < o.id;
  }
};

// The GPUs of one kind (type + memory size), indexed for best-fit and worst-fit search.
struct GpuPool {
  std::string type;
  uint64_t memory = 0;
  std::set<std::pair<int64_t, int32_t>> partial_gpus;  // (free milli, gpu): partly used GPUs
  std::set<std::pair<int, NodeId>> nodes_by_free;      // (whole free GPUs, node), when > 0
  int64_t free_milli_total = 0;
};

class ClusterState {
 public:
  // Building the cluster; ids are dense and handed out in order.
  NodeId AddNode(NodeSpec spec);
  QueueId AddQueue(QueueSpec spec);  // the parent must exist already
  GangId AddGang(std::string name, int min_members, std::string topology_key = "");
  // Adds a pending workload; joins spec.gang when set. Not part of any transaction.
  WorkloadId AddWorkload(WorkloadSpec spec);
  // A workload that finished or was withdrawn: frees its resources and forgets it.
  void RemoveWorkload(WorkloadId id);

  // Transactional changes.
  void Bind(WorkloadId id, const Placement& placement);
  void Unbind(WorkloadId id);  // back to pending
  size_t Checkpoint() const { return undo_log_.size(); }
  void Rollback(size_t checkpoint);
  void Commit() { undo_log_.clear(); }

  // Read access.
  int node_count() const { return static_cast<int>(nodes_.size()); }
  int gpu_count() const { return static_cast<int>(gpus_.size()); }
  int queue_count() const { return static_cast<int>(queues_.size()); }
  int gang_count() const { return static_cast<int>(gangs_.size()); }
  int workload_count() const { return static_cast<int>(workloads_.size()); }
  const NodeState& node(NodeId id) const { return nodes_[id]; }
  const GpuState& gpu(int32_t id) const { return gpus_[id]; }
  const QueueState& queue(QueueId id) const { return queues_[id]; }
  const GangSpec& gang(GangId id) const { return gangs_[id]; }
  const WorkloadState& workload(WorkloadId id) const { return workloads_[id]; }
  const std::vector<GpuPool>& pools() const { return pools_; }
  const std::set<PendingKey>& pending(QueueId q) const { return pending_by_queue_[q]; }
  const std::set<RunningKey>& running(QueueId q) const { return running_by_queue_[q]; }
  size_t pending_total() const { return pending_total_; }
  size_t bound_total() const { return bound_total_; }
  // Total capacity the fair share divides (GPUs in cards, CPU in cores, memory in bytes).
  const ResourceVec& capacity() const { return capacity_; }

  // Lookup by name (scenarios and traces refer to names); kNone when absent.
  NodeId FindNode(const std::string& name) const;
  QueueId FindQueue(const std::string& name) const;
  GangId FindGang(const std::string& name) const;
  WorkloadId FindWorkload(const std::string& name) const;

  // What a workload would be charged in its queue when placed as `placement`.
  ResourceVec ChargeOf(const WorkloadSpec& spec, const Placement& placement) const;
  // Compute and memory a fractional request takes on a GPU of `pool`; false when it cannot fit
  // any GPU of that pool (memory request larger than the card).
  bool FractionNeed(const GpuRequest& request, int32_t pool, int64_t* milli,
                    uint64_t* memory) const;

 private:
  enum class UndoKind { kBound, kUnbound };
  struct UndoEntry {
    UndoKind kind;
    WorkloadId id;
    Placement placement;
  };

  void Apply(WorkloadId id, const Placement& placement);  // take resources
  void Release(WorkloadId id);                            // give resources back
  void SetGpuFree(int32_t gpu, int64_t free_milli, uint64_t free_memory);
  void SetNodeFreeWhole(NodeId node, int free_whole);
  void ChargeQueues(QueueId leaf, const ResourceVec& charge, bool non_preemptible, int sign);
  void AddPending(WorkloadId id);
  void RemovePending(WorkloadId id);
  int32_t PoolFor(const std::string& type, uint64_t memory);
  double GpuUnitsAsked(const WorkloadSpec& spec) const;

  std::vector<NodeState> nodes_;
  std::vector<GpuState> gpus_;
  std::vector<QueueState> queues_;
  std::vector<GangSpec> gangs_;
  std::vector<WorkloadState> workloads_;
  std::vector<GpuPool> pools_;
  std::vector<std::set<PendingKey>> pending_by_queue_;
  std::vector<std::set<RunningKey>> running_by_queue_;
  std::unordered_map<std::string, NodeId> node_by_name_;
  std::unordered_map<std::string, QueueId> queue_by_name_;
  std::unordered_map<std::string, GangId> gang_by_name_;
  std::unordered_map<std::string, WorkloadId> workload_by_name_;
  std::vector<UndoEntry> undo_log_;
  ResourceVec capacity_;
  int64_t next_sequence_ = 0;
  size_t pending_total_ = 0;
  size_t bound_total_ = 0;
};

}  // namespace gpufrac::sched
