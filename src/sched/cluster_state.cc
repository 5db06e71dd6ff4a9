#include "sched/cluster_state.h"

#include <cassert>
#include <cmath>

namespace gpufrac::sched {

const char* ResourceName(Resource resource) {
  switch (resource) {
    case Resource::kGpu:
      return "gpu";
    case Resource::kCpu:
      return "cpu";
    case Resource::kMemory:
      return "memory";
  }
  return "?";
}

ResourceVec& ResourceVec::operator+=(const ResourceVec& other) {
  for (int i = 0; i < kResourceCount; ++i) value[i] += other.value[i];
  return *this;
}

ResourceVec& ResourceVec::operator-=(const ResourceVec& other) {
  for (int i = 0; i < kResourceCount; ++i) value[i] -= other.value[i];
  return *this;
}

ResourceVec ResourceVec::Unlimited() {
  ResourceVec v;
  v.value.fill(kUnlimited);
  return v;
}

std::vector<PriorityClass> DefaultPriorityClasses() {
  // Values leave room between classes for users' own.
  return {{"inference", 125, false},
          {"build", 100, false},
          {"batch", 50, true},
          {"training", 50, true}};
}

NodeId ClusterState::AddNode(NodeSpec spec) {
  const NodeId id = static_cast<NodeId>(nodes_.size());
  NodeState node;
  node.first_gpu = static_cast<int32_t>(gpus_.size());
  node.free_cpu_milli = spec.cpu_milli;
  node.free_memory = spec.memory_bytes;
  capacity_[Resource::kGpu] += spec.gpu_count;
  capacity_[Resource::kCpu] += static_cast<double>(spec.cpu_milli) / 1000.0;
  capacity_[Resource::kMemory] += static_cast<double>(spec.memory_bytes);
  if (spec.gpu_count > 0) node.pool = PoolFor(spec.gpu_type, spec.gpu_memory_bytes);
  for (int i = 0; i < spec.gpu_count; ++i) {
    GpuState gpu;
    gpu.node = id;
    gpu.pool = node.pool;
    gpu.memory = spec.gpu_memory_bytes;
    gpu.free_memory = spec.gpu_memory_bytes;
    gpus_.push_back(std::move(gpu));
  }
  node_by_name_[spec.name] = id;
  node.spec = std::move(spec);
  nodes_.push_back(std::move(node));
  if (nodes_.back().spec.gpu_count > 0) {
    GpuPool& pool = pools_[nodes_.back().pool];
    pool.free_milli_total += kMilliPerGpu * nodes_.back().spec.gpu_count;
    SetNodeFreeWhole(id, nodes_.back().spec.gpu_count);
  }
  return id;
}

int32_t ClusterState::PoolFor(const std::string& type, uint64_t memory) {
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i].type == type && pools_[i].memory == memory) return static_cast<int32_t>(i);
  }
  GpuPool pool;
  pool.type = type;
  pool.memory = memory;
  pools_.push_back(std::move(pool));
  return static_cast<int32_t>(pools_.size() - 1);
}

QueueId ClusterState::AddQueue(QueueSpec spec) {
  const QueueId id = static_cast<QueueId>(queues_.size());
  if (spec.parent != kNone) queues_[spec.parent].spec.children.push_back(id);
  queue_by_name_[spec.name] = id;
  QueueState queue;
  queue.spec = std::move(spec);
  queues_.push_back(std::move(queue));
  pending_by_queue_.emplace_back();
  running_by_queue_.emplace_back();
  return id;
}

GangId ClusterState::AddGang(std::string name, int min_members, std::string topology_key) {
  const GangId id = static_cast<GangId>(gangs_.size());
  gang_by_name_[name] = id;
  GangSpec gang;
  gang.name = std::move(name);
  gang.min_members = min_members;
  gang.topology_key = std::move(topology_key);
  gangs_.push_back(std::move(gang));
  return id;
}

double ClusterState::GpuUnitsAsked(const WorkloadSpec& spec) const {
  switch (spec.gpu.kind) {
    case GpuRequestKind::kNoGpu:
      return 0;
    case GpuRequestKind::kWhole:
      return spec.gpu.count;
    case GpuRequestKind::kPortion:
      return static_cast<double>(spec.gpu.portion_milli) / kMilliPerGpu;
    case GpuRequestKind::kMemory:
      // Against the largest card of the asked type: the smallest share it can amount to.
      uint64_t largest = 0;
      for (const GpuPool& pool : pools_) {
        if (spec.gpu_type.empty() || pool.type == spec.gpu_type) {
          largest = std::max(largest, pool.memory);
        }
      }
      if (largest == 0) return 0;
      return static_cast<double>(spec.gpu.memory_bytes) / static_cast<double>(largest);
  }
  return 0;
}

WorkloadId ClusterState::AddWorkload(WorkloadSpec spec) {
  const WorkloadId id = static_cast<WorkloadId>(workloads_.size());
  WorkloadState w;
  w.sequence = next_sequence_++;
  w.gpu_units = GpuUnitsAsked(spec);
  if (spec.gang != kNone) gangs_[spec.gang].members.push_back(id);
  workload_by_name_[spec.name] = id;
  w.spec = std::move(spec);
  workloads_.push_back(std::move(w));
  AddPending(id);
  return id;
}

void ClusterState::RemoveWorkload(WorkloadId id) {
  WorkloadState& w = workloads_[id];
  if (w.status == WorkloadStatus::kRemoved) return;
  if (w.status == WorkloadStatus::kBound) {
    Release(id);
  } else {
    RemovePending(id);
  }
  w.status = WorkloadStatus::kRemoved;
  auto it = workload_by_name_.find(w.spec.name);
  if (it != workload_by_name_.end() && it->second == id) workload_by_name_.erase(it);
}

void ClusterState::AddPending(WorkloadId id) {
  const WorkloadState& w = workloads_[id];
  pending_by_queue_[w.spec.queue].insert({w.spec.priority, w.sequence, id});
  ++pending_total_;
}

void ClusterState::RemovePending(WorkloadId id) {
  const WorkloadState& w = workloads_[id];
  pending_by_queue_[w.spec.queue].erase({w.spec.priority, w.sequence, id});
  --pending_total_;
}

void ClusterState::Bind(WorkloadId id, const Placement& placement) {
  assert(workloads_[id].status == WorkloadStatus::kPending);
  RemovePending(id);
  Apply(id, placement);
  undo_log_.push_back({UndoKind::kBound, id, {}});
}

void ClusterState::Unbind(WorkloadId id) {
  assert(workloads_[id].status == WorkloadStatus::kBound);
  Placement old = workloads_[id].placement;
  Release(id);
  AddPending(id);
  undo_log_.push_back({UndoKind::kUnbound, id, std::move(old)});
}

void ClusterState::Rollback(size_t checkpoint) {
  while (undo_log_.size() > checkpoint) {
    UndoEntry entry = std::move(undo_log_.back());
    undo_log_.pop_back();
    if (entry.kind == UndoKind::kBound) {
      Release(entry.id);
      AddPending(entry.id);
    } else {
      RemovePending(entry.id);
      Apply(entry.id, entry.placement);
    }
  }
}

ResourceVec ClusterState::ChargeOf(const WorkloadSpec& spec, const Placement& placement) const {
  ResourceVec charge;
  int64_t milli = 0;
  for (const GpuSlice& s : placement.slices) milli += s.milli;
  charge[Resource::kGpu] = static_cast<double>(milli) / kMilliPerGpu;
  charge[Resource::kCpu] = static_cast<double>(spec.cpu_milli) / 1000.0;
  charge[Resource::kMemory] = static_cast<double>(spec.memory_bytes);
  return charge;
}

bool ClusterState::FractionNeed(const GpuRequest& request, int32_t pool, int64_t* milli,
                                uint64_t* memory) const {
  if (pool < 0 || pool >= static_cast<int32_t>(pools_.size())) return false;  // no GPUs there
  const uint64_t card = pools_[pool].memory;
  if (request.kind == GpuRequestKind::kPortion) {
    *milli = request.portion_milli;
    *memory = static_cast<uint64_t>(static_cast<long double>(card) * request.portion_milli /
                                    kMilliPerGpu);
    return true;
  }
  if (request.memory_bytes > card || card == 0) return false;
  // Compute share follows memory share, rounded up so that shares never add past a card.
  const long double share = static_cast<long double>(request.memory_bytes) / card;
  *milli = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(share * kMilliPerGpu - 1e-9L)));
  *memory = request.memory_bytes;
  return true;
}

void ClusterState::Apply(WorkloadId id, const Placement& placement) {
  WorkloadState& w = workloads_[id];
  NodeState& node = nodes_[placement.node];
  node.free_cpu_milli -= w.spec.cpu_milli;
  node.free_memory -= w.spec.memory_bytes;
  node.tenants.push_back(id);
  int whole_taken = 0;
  for (const GpuSlice& s : placement.slices) {
    GpuState& gpu = gpus_[s.gpu];
    if (gpu.IsWholeFree()) ++whole_taken;
    gpu.tenants.push_back(id);
    pools_[gpu.pool].free_milli_total -= s.milli;
    SetGpuFree(s.gpu, gpu.free_milli - s.milli, gpu.free_memory - s.memory);
  }
  if (whole_taken > 0) SetNodeFreeWhole(placement.node, node.free_whole_gpus - whole_taken);
  w.placement = placement;
  w.status = WorkloadStatus::kBound;
  ++bound_total_;
  running_by_queue_[w.spec.queue].insert({w.spec.priority, w.sequence, id});
  ChargeQueues(w.spec.queue, ChargeOf(w.spec, placement), !w.spec.preemptible, +1);
}

static void EraseValue(std::vector<WorkloadId>* v, WorkloadId id) {
  for (size_t i = 0; i < v->size(); ++i) {
    if ((*v)[i] == id) {
      (*v)[i] = v->back();
      v->pop_back();
      return;
    }
  }
}

void ClusterState::Release(WorkloadId id) {
  WorkloadState& w = workloads_[id];
  const Placement& placement = w.placement;
  NodeState& node = nodes_[placement.node];
  node.free_cpu_milli += w.spec.cpu_milli;
  node.free_memory += w.spec.memory_bytes;
  EraseValue(&node.tenants, id);
  int whole_freed = 0;
  for (const GpuSlice& s : placement.slices) {
    GpuState& gpu = gpus_[s.gpu];
    EraseValue(&gpu.tenants, id);
    pools_[gpu.pool].free_milli_total += s.milli;
    SetGpuFree(s.gpu, gpu.free_milli + s.milli, gpu.free_memory + s.memory);
    if (gpu.IsWholeFree()) ++whole_freed;
  }
  if (whole_freed > 0) SetNodeFreeWhole(placement.node, node.free_whole_gpus + whole_freed);
  ChargeQueues(w.spec.queue, ChargeOf(w.spec, placement), !w.spec.preemptible, -1);
  running_by_queue_[w.spec.queue].erase({w.spec.priority, w.sequence, id});
  --bound_total_;
  w.placement = Placement{};
  w.status = WorkloadStatus::kPending;
}

void ClusterState::SetGpuFree(int32_t gpu_id, int64_t free_milli, uint64_t free_memory) {
  GpuState& gpu = gpus_[gpu_id];
  GpuPool& pool = pools_[gpu.pool];
  const bool was_partial = gpu.free_milli > 0 && !gpu.IsWholeFree();
  if (was_partial) pool.partial_gpus.erase({gpu.free_milli, gpu_id});
  gpu.free_milli = free_milli;
  gpu.free_memory = free_memory;
  const bool is_partial = gpu.free_milli > 0 && !gpu.IsWholeFree();
  if (is_partial) pool.partial_gpus.insert({gpu.free_milli, gpu_id});
}

void ClusterState::SetNodeFreeWhole(NodeId node_id, int free_whole) {
  NodeState& node = nodes_[node_id];
  GpuPool& pool = pools_[node.pool];
  if (node.free_whole_gpus > 0) pool.nodes_by_free.erase({node.free_whole_gpus, node_id});
  node.free_whole_gpus = free_whole;
  if (free_whole > 0) pool.nodes_by_free.insert({free_whole, node_id});
}

void ClusterState::ChargeQueues(QueueId leaf, const ResourceVec& charge, bool non_preemptible,
                                int sign) {
  for (QueueId q = leaf; q != kNone; q = queues_[q].spec.parent) {
    QueueState& queue = queues_[q];
    for (int i = 0; i < kResourceCount; ++i) {
      queue.allocated.value[i] += sign * charge.value[i];
      if (non_preemptible) queue.allocated_non_preemptible.value[i] += sign * charge.value[i];
    }
  }
}

template <typename Map>
static int32_t Lookup(const Map& map, const std::string& name) {
  auto it = map.find(name);
  return it == map.end() ? kNone : it->second;
}

NodeId ClusterState::FindNode(const std::string& name) const { return Lookup(node_by_name_, name); }
QueueId ClusterState::FindQueue(const std::string& name) const {
  return Lookup(queue_by_name_, name);
}
GangId ClusterState::FindGang(const std::string& name) const { return Lookup(gang_by_name_, name); }
WorkloadId ClusterState::FindWorkload(const std::string& name) const {
  return Lookup(workload_by_name_, name);
}

}  // namespace gpufrac::sched
