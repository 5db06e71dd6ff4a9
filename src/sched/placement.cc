#include "sched/placement.h"

#include <algorithm>
#include <climits>
#include <cstdio>

#include "common/quantity.h"

namespace gpufrac::sched {
namespace {

// Why candidates that had GPU room were turned down; summarised in the failure reason.
struct Rejections {
  int selector = 0;
  int cpu = 0;
  int memory = 0;
  int gpu_memory = 0;
};

bool PoolMatches(const GpuPool& pool, const WorkloadSpec& spec) {
  if (spec.gpu.kind == GpuRequestKind::kMemory && spec.gpu.memory_bytes > pool.memory) return false;
  return spec.gpu_type.empty() || pool.type == spec.gpu_type;
}

bool InDomain(const ClusterState& state, const PlacementQuery& q, NodeId node) {
  if (q.domain_key.empty()) return true;
  const auto& labels = state.node(node).spec.labels;
  auto it = labels.find(q.domain_key);
  return it != labels.end() && it->second == q.domain_value;
}

// Accepts the node when it matches and has room, counting why it does not otherwise.
bool Accept(const ClusterState& state, const WorkloadSpec& spec, const PlacementQuery& q,
            NodeId node, Rejections* r) {
  if (!NodeMatches(state, spec, node) || !InDomain(state, q, node)) {
    ++r->selector;
    return false;
  }
  const NodeState& n = state.node(node);
  if (n.free_cpu_milli < spec.cpu_milli) {
    ++r->cpu;
    return false;
  }
  if (n.free_memory < spec.memory_bytes) {
    ++r->memory;
    return false;
  }
  return true;
}

std::vector<GpuSlice> TakeWholeGpus(const ClusterState& state, NodeId node, int count) {
  std::vector<GpuSlice> slices;
  const NodeState& n = state.node(node);
  for (int i = 0; i < n.spec.gpu_count && static_cast<int>(slices.size()) < count; ++i) {
    const int32_t g = n.first_gpu + i;
    const GpuState& gpu = state.gpu(g);
    if (gpu.IsWholeFree()) slices.push_back({g, kMilliPerGpu, gpu.memory});
  }
  return slices;
}

// A node with at least `count` whole free GPUs: fewest free first (binpack) or most (spread).
NodeId FindNodeWithWholeGpus(const ClusterState& state, const WorkloadSpec& spec,
                             const PlacementQuery& q, int count, Rejections* r) {
  NodeId best = kNone;
  int best_free = 0;
  const bool spread = spec.strategy == PlacementStrategy::kSpread;
  for (const GpuPool& pool : state.pools()) {
    if (!PoolMatches(pool, spec)) continue;
    if (spread) {
      for (auto it = pool.nodes_by_free.rbegin();
           it != pool.nodes_by_free.rend() && it->first >= count; ++it) {
        if (!Accept(state, spec, q, it->second, r)) continue;
        if (best == kNone || it->first > best_free) best = it->second, best_free = it->first;
        break;
      }
      continue;
    }
    for (auto it = pool.nodes_by_free.lower_bound({count, INT_MIN}); it != pool.nodes_by_free.end();
         ++it) {
      if (!Accept(state, spec, q, it->second, r)) continue;
      if (best == kNone || it->first < best_free) best = it->second, best_free = it->first;
      break;
    }
  }
  return best;
}

// A partly used GPU that fits the fraction: least room first (binpack) or most room (spread).
int32_t FindPartialGpu(const ClusterState& state, const WorkloadSpec& spec, const PlacementQuery& q,
                       Rejections* r, int64_t* out_milli, uint64_t* out_memory) {
  int32_t best = kNone;
  int64_t best_free = 0;
  const bool spread = spec.strategy == PlacementStrategy::kSpread;
  for (size_t p = 0; p < state.pools().size(); ++p) {
    const GpuPool& pool = state.pools()[p];
    int64_t milli = 0;
    uint64_t memory = 0;
    if (!PoolMatches(pool, spec)) continue;
    if (!state.FractionNeed(spec.gpu, static_cast<int32_t>(p), &milli, &memory)) continue;
    auto consider = [&](const std::pair<int64_t, int32_t>& entry) {
      const GpuState& gpu = state.gpu(entry.second);
      if (gpu.free_memory < memory) {
        ++r->gpu_memory;
        return false;
      }
      if (!Accept(state, spec, q, gpu.node, r)) return false;
      const bool better = spread ? entry.first > best_free : entry.first < best_free;
      if (best == kNone || better) {
        best = entry.second, best_free = entry.first, *out_milli = milli, *out_memory = memory;
      }
      return true;
    };
    if (spread) {
      for (auto it = pool.partial_gpus.rbegin();
           it != pool.partial_gpus.rend() && it->first >= milli; ++it) {
        if (consider(*it)) break;
      }
    } else {
      for (auto it = pool.partial_gpus.lower_bound({milli, INT32_MIN});
           it != pool.partial_gpus.end(); ++it) {
        if (consider(*it)) break;
      }
    }
  }
  return best;
}

std::optional<Placement> PlaceFractionOnWholeGpu(const ClusterState& state,
                                                 const WorkloadSpec& spec, const PlacementQuery& q,
                                                 Rejections* r) {
  const NodeId node = FindNodeWithWholeGpus(state, spec, q, 1, r);
  if (node == kNone) return std::nullopt;
  std::vector<GpuSlice> slices = TakeWholeGpus(state, node, 1);
  int64_t milli = 0;
  uint64_t memory = 0;
  if (slices.empty() ||
      !state.FractionNeed(spec.gpu, state.gpu(slices[0].gpu).pool, &milli, &memory)) {
    return std::nullopt;
  }
  slices[0].milli = milli;
  slices[0].memory = memory;
  return Placement{node, std::move(slices)};
}

std::optional<Placement> PlaceOnNode(const ClusterState& state, const WorkloadSpec& spec,
                                     const PlacementQuery& q, NodeId node, std::string* reason) {
  Rejections r;
  const NodeState& n = state.node(node);
  if (!Accept(state, spec, q, node, &r)) {
    *reason = "node '" + n.spec.name + "' does not match or lacks CPU/memory";
    return std::nullopt;
  }
  if (spec.gpu.kind == GpuRequestKind::kNoGpu) return Placement{node, {}};
  if (n.spec.gpu_count == 0) {
    *reason = "node '" + n.spec.name + "' has no GPUs";
    return std::nullopt;
  }
  if (spec.gpu.kind == GpuRequestKind::kWhole) {
    if (n.free_whole_gpus < spec.gpu.count) {
      *reason = "node '" + n.spec.name + "' lacks whole free GPUs";
      return std::nullopt;
    }
    return Placement{node, TakeWholeGpus(state, node, spec.gpu.count)};
  }
  int64_t milli = 0;
  uint64_t memory = 0;
  if (!state.FractionNeed(spec.gpu, n.pool, &milli, &memory)) {
    *reason = "request exceeds a GPU of node '" + n.spec.name + "'";
    return std::nullopt;
  }
  int32_t best = kNone;
  for (int i = 0; i < n.spec.gpu_count; ++i) {
    const int32_t g = n.first_gpu + i;
    const GpuState& gpu = state.gpu(g);
    if (gpu.free_milli < milli || gpu.free_memory < memory) continue;
    if (best == kNone || gpu.free_milli < state.gpu(best).free_milli) best = g;
  }
  if (best == kNone) {
    *reason = "no GPU of node '" + n.spec.name + "' has room";
    return std::nullopt;
  }
  return Placement{node, {{best, milli, memory}}};
}

std::string Summarize(const Rejections& r) {
  std::string out;
  auto add = [&out](int count, const char* what) {
    if (count == 0) return;
    out += "; " + std::to_string(count) + " candidate(s) " + what;
  };
  add(r.selector, "of another type or without the selected labels");
  add(r.cpu, "on nodes short of CPU");
  add(r.memory, "on nodes short of memory");
  add(r.gpu_memory, "short of GPU memory");
  return out;
}

// For a memory request larger than every GPU of its type: says so, with the largest GPU's
// memory (free capacity is beside the point then). Empty otherwise.
std::string TooLargeForAnyGpu(const ClusterState& state, const WorkloadSpec& spec) {
  if (spec.gpu.kind != GpuRequestKind::kMemory) return "";
  uint64_t largest = 0;
  for (const GpuPool& pool : state.pools()) {
    if (spec.gpu_type.empty() || pool.type == spec.gpu_type)
      largest = std::max(largest, pool.memory);
  }
  if (largest == 0 || spec.gpu.memory_bytes <= largest) return "";  // no such type: said below
  char size[32];
  FormatBytes(largest, size, sizeof(size));
  return std::string("no GPU has that much memory (the largest has ") + size + ")";
}

// The largest free share of any GPU the workload could use, and where, for failure reasons.
std::string LargestFree(const ClusterState& state, const WorkloadSpec& spec) {
  if (std::string too_large = TooLargeForAnyGpu(state, spec); !too_large.empty()) {
    return too_large;
  }
  int64_t best = 0;
  int32_t where = kNone;
  for (const GpuPool& pool : state.pools()) {
    if (!PoolMatches(pool, spec)) continue;
    if (!pool.nodes_by_free.empty()) {
      const NodeId node = pool.nodes_by_free.rbegin()->second;
      return "the most whole free GPUs on a node is " +
             std::to_string(pool.nodes_by_free.rbegin()->first) + " (node '" +
             state.node(node).spec.name + "')";
    }
    if (!pool.partial_gpus.empty() && pool.partial_gpus.rbegin()->first > best) {
      best = pool.partial_gpus.rbegin()->first;
      where = pool.partial_gpus.rbegin()->second;
    }
  }
  if (where == kNone) return "no GPU of that type has free capacity";
  char buf[128];
  std::snprintf(buf, sizeof(buf), "the largest free share of a GPU is %.3f (node '%s')",
                static_cast<double>(best) / kMilliPerGpu,
                state.node(state.gpu(where).node).spec.name.c_str());
  return buf;
}

}  // namespace

bool NodeMatches(const ClusterState& state, const WorkloadSpec& spec, NodeId node) {
  const NodeSpec& n = state.node(node).spec;
  if (!spec.gpu_type.empty() && spec.gpu.kind != GpuRequestKind::kNoGpu &&
      n.gpu_type != spec.gpu_type) {
    return false;
  }
  for (const auto& [key, value] : spec.node_selector) {
    auto it = n.labels.find(key);
    if (it == n.labels.end() || it->second != value) return false;
  }
  return true;
}

bool NodeHasRoom(const ClusterState& state, const WorkloadSpec& spec, NodeId node) {
  const NodeState& n = state.node(node);
  return n.free_cpu_milli >= spec.cpu_milli && n.free_memory >= spec.memory_bytes;
}

std::string DescribeRequest(const WorkloadSpec& spec) {
  char buf[96];
  switch (spec.gpu.kind) {
    case GpuRequestKind::kNoGpu:
      return "no GPU";
    case GpuRequestKind::kWhole:
      std::snprintf(buf, sizeof(buf), "%d whole GPU(s)", spec.gpu.count);
      break;
    case GpuRequestKind::kPortion:
      std::snprintf(buf, sizeof(buf), "%.3f of a GPU",
                    static_cast<double>(spec.gpu.portion_milli) / kMilliPerGpu);
      break;
    case GpuRequestKind::kMemory: {
      char size[32];
      FormatBytes(spec.gpu.memory_bytes, size, sizeof(size));
      std::snprintf(buf, sizeof(buf), "%s of GPU memory", size);
      break;
    }
  }
  std::string out = buf;
  if (!spec.gpu_type.empty()) out += " of type " + spec.gpu_type;
  return out;
}

std::optional<Placement> FindPlacement(const ClusterState& state, WorkloadId id,
                                       const PlacementQuery& query, std::string* reason) {
  const WorkloadSpec& spec = state.workload(id).spec;
  if (query.only_node != kNone) return PlaceOnNode(state, spec, query, query.only_node, reason);
  Rejections rejections;
  switch (spec.gpu.kind) {
    case GpuRequestKind::kNoGpu: {
      for (NodeId n = 0; n < state.node_count(); ++n) {
        if (Accept(state, spec, query, n, &rejections)) return Placement{n, {}};
      }
      *reason = "no node has the CPU and memory asked" + Summarize(rejections);
      return std::nullopt;
    }
    case GpuRequestKind::kWhole: {
      const NodeId node = FindNodeWithWholeGpus(state, spec, query, spec.gpu.count, &rejections);
      if (node != kNone) return Placement{node, TakeWholeGpus(state, node, spec.gpu.count)};
      break;
    }
    case GpuRequestKind::kPortion:
    case GpuRequestKind::kMemory: {
      const bool spread = spec.strategy == PlacementStrategy::kSpread;
      if (spread) {
        if (auto p = PlaceFractionOnWholeGpu(state, spec, query, &rejections)) return p;
      }
      int64_t milli = 0;
      uint64_t memory = 0;
      const int32_t gpu = FindPartialGpu(state, spec, query, &rejections, &milli, &memory);
      if (gpu != kNone) return Placement{state.gpu(gpu).node, {{gpu, milli, memory}}};
      if (!spread) {
        if (auto p = PlaceFractionOnWholeGpu(state, spec, query, &rejections)) return p;
      }
      break;
    }
  }
  *reason = "no node has room for " + DescribeRequest(spec) + ": " + LargestFree(state, spec) +
            Summarize(rejections);
  return std::nullopt;
}

}  // namespace gpufrac::sched
