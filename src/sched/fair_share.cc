#include "sched/fair_share.h"

#include <algorithm>
#include <cmath>

namespace gpufrac::sched {
namespace {

// Amounts below this are rounding noise from adding and removing fractions.
constexpr double kEpsilon = 1e-9;

void DivideChildren(const ClusterState& state, QueueId parent_id, FairShare* fs) {
  const QueueState& parent = state.queue(parent_id);
  const std::vector<QueueId>& children = parent.spec.children;
  if (children.empty()) return;
  for (int r = 0; r < kResourceCount; ++r) {
    const Resource res = static_cast<Resource>(r);
    std::vector<ShareClaim> claims;
    claims.reserve(children.size());
    for (QueueId c : children) {
      const QueueSpec& spec = state.queue(c).spec;
      claims.push_back({spec.deserved[res], spec.over_quota_weight, fs->demand[c][res]});
    }
    const std::vector<double> shares = DivideShare(fs->share[parent_id][res], claims);
    for (size_t i = 0; i < children.size(); ++i) fs->share[children[i]][res] = shares[i];
  }
  for (QueueId c : children) DivideChildren(state, c, fs);
}

// Demand of a queue: its own pending and allocated for leaves, the sum of children otherwise,
// capped by its limit either way.
void ComputeDemand(const ClusterState& state, QueueId q, FairShare* fs) {
  const QueueState& queue = state.queue(q);
  ResourceVec demand;
  if (queue.IsLeaf()) {
    demand = queue.allocated;
    for (const PendingKey& key : state.pending(q)) demand += DemandOf(state.workload(key.id));
  } else {
    for (QueueId c : queue.spec.children) {
      ComputeDemand(state, c, fs);
      demand += fs->demand[c];
    }
  }
  for (int r = 0; r < kResourceCount; ++r) {
    demand.value[r] = std::min(demand.value[r], queue.spec.limit.value[r]);
  }
  fs->demand[q] = demand;
}

// A queue can hold a share of a resource only through a quota or an over-quota weight, and only
// where its parent can.
void ComputeEntitlement(const ClusterState& state, QueueId q, const ResourceMask& parent,
                        FairShare* fs) {
  const QueueSpec& spec = state.queue(q).spec;
  ResourceMask mine{};
  for (int r = 0; r < kResourceCount; ++r) {
    mine[r] = parent[r] && (spec.deserved.value[r] > kEpsilon || spec.over_quota_weight > 0);
  }
  fs->entitled[q] = mine;
  for (QueueId c : spec.children) ComputeEntitlement(state, c, mine, fs);
}

}  // namespace

std::vector<double> DivideShare(double amount, const std::vector<ShareClaim>& claims) {
  std::vector<double> given(claims.size(), 0);
  // Round 1: deserved quotas, scaled down together when the parent cannot cover them all.
  double quota_total = 0;
  for (const ShareClaim& c : claims) quota_total += std::min(c.deserved, c.demand);
  const double scale = quota_total > amount && quota_total > 0 ? amount / quota_total : 1;
  double left = amount;
  for (size_t i = 0; i < claims.size(); ++i) {
    given[i] = std::min(claims[i].deserved, claims[i].demand) * scale;
    left -= given[i];
  }
  // Round 2: water-fill the rest by over-quota weight among children that still want more.
  std::vector<bool> satisfied(claims.size());
  for (size_t i = 0; i < claims.size(); ++i) {
    satisfied[i] = given[i] + kEpsilon >= claims[i].demand || claims[i].weight <= 0;
  }
  while (left > kEpsilon) {
    double weight_total = 0;
    for (size_t i = 0; i < claims.size(); ++i) {
      if (!satisfied[i]) weight_total += claims[i].weight;
    }
    if (weight_total <= 0) break;
    bool capped_any = false;
    const double round_amount = left;
    for (size_t i = 0; i < claims.size(); ++i) {
      if (satisfied[i]) continue;
      const double offer = round_amount * claims[i].weight / weight_total;
      const double want = claims[i].demand - given[i];
      if (offer >= want) {
        given[i] += want;
        left -= want;
        satisfied[i] = true;
        capped_any = true;
      }
    }
    if (capped_any) continue;  // recompute offers among those still unsatisfied
    for (size_t i = 0; i < claims.size(); ++i) {
      if (satisfied[i]) continue;
      given[i] += round_amount * claims[i].weight / weight_total;
    }
    left = 0;
  }
  return given;
}

ResourceVec DemandOf(const WorkloadState& workload) {
  ResourceVec demand;
  demand[Resource::kGpu] = workload.gpu_units;
  demand[Resource::kCpu] = static_cast<double>(workload.spec.cpu_milli) / 1000.0;
  demand[Resource::kMemory] = static_cast<double>(workload.spec.memory_bytes);
  return demand;
}

FairShare ComputeFairShare(const ClusterState& state) {
  FairShare fs;
  const size_t n = static_cast<size_t>(state.queue_count());
  fs.share.assign(n, ResourceVec{});
  fs.demand.assign(n, ResourceVec{});
  fs.entitled.assign(n, kAllResources);
  for (QueueId q = 0; q < state.queue_count(); ++q) {
    if (state.queue(q).spec.parent != kNone) continue;
    ComputeDemand(state, q, &fs);
    ComputeEntitlement(state, q, kAllResources, &fs);
  }
  // Top-level queues divide the cluster as children of an implicit root.
  std::vector<QueueId> roots;
  for (QueueId q = 0; q < state.queue_count(); ++q) {
    if (state.queue(q).spec.parent == kNone) roots.push_back(q);
  }
  for (int r = 0; r < kResourceCount; ++r) {
    const Resource res = static_cast<Resource>(r);
    std::vector<ShareClaim> claims;
    for (QueueId q : roots) {
      const QueueSpec& spec = state.queue(q).spec;
      claims.push_back({spec.deserved[res], spec.over_quota_weight, fs.demand[q][res]});
    }
    const std::vector<double> shares = DivideShare(state.capacity()[res], claims);
    for (size_t i = 0; i < roots.size(); ++i) fs.share[roots[i]][res] = shares[i];
  }
  for (QueueId q : roots) DivideChildren(state, q, &fs);
  return fs;
}

double SaturationRatio(const ResourceVec& allocated, const ResourceVec& share,
                       const ResourceMask& counted) {
  double ratio = 0;
  bool holds_counted = false;
  bool holds_other = false;
  for (int r = 0; r < kResourceCount; ++r) {
    const double alloc = allocated.value[r];
    if (alloc <= kEpsilon) continue;
    if (!counted[r]) {
      holds_other = true;
      continue;
    }
    holds_counted = true;
    if (share.value[r] <= kEpsilon) return HUGE_VAL;
    ratio = std::max(ratio, alloc / share.value[r]);
  }
  return holds_other && !holds_counted ? HUGE_VAL : ratio;
}

double QueueSaturation(const FairShare& fs, QueueId q, const ResourceVec& allocated) {
  return SaturationRatio(allocated, fs.share[q], fs.entitled[q]);
}

}  // namespace gpufrac::sched
