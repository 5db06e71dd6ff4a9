// The allocate action: pending items in queue order (least saturated queue first, by dominant
// resource share against its fair share), and within a queue by priority then age. Gangs are
// placed atomically: all their required members or none.
#include <algorithm>
#include <cstdio>
#include <map>
#include <queue>
#include <tuple>
#include <unordered_set>

#include "sched/actions.h"
#include "sched/placement.h"

namespace gpufrac::sched {
namespace {

// Slack for comparing sums of fractions against quotas.
constexpr double kQuotaEpsilon = 1e-6;
// Topology domains a gang tries per cycle, at most.
constexpr int kMaxDomainTries = 16;

// Requests alike in everything placement looks at; while allocate runs nothing is freed, so a
// shape that failed once fails again and need not be searched for.
using Shape =
    std::tuple<int, int, int64_t, uint64_t, int64_t, uint64_t, std::string, int, std::string>;
Shape ShapeOf(const WorkloadSpec& s) {
  std::string selector;
  for (const auto& [key, value] : s.node_selector) selector += key + "=" + value + ",";
  return {static_cast<int>(s.gpu.kind),
          s.gpu.count,
          s.gpu.portion_milli,
          s.gpu.memory_bytes,
          s.cpu_milli,
          s.memory_bytes,
          s.gpu_type,
          static_cast<int>(s.strategy),
          selector};
}

struct QueueCursor {
  std::vector<WorkloadId> pending;
  size_t next = 0;
};

}  // namespace

std::vector<WorkloadId> ItemMembers(const ClusterState& state, WorkloadId first) {
  const GangId gang = state.workload(first).spec.gang;
  if (gang == kNone) return {first};
  std::vector<WorkloadId> members;
  for (WorkloadId m : state.gang(gang).members) {
    if (state.workload(m).status == WorkloadStatus::kPending) members.push_back(m);
  }
  return members;
}

int RequiredMembers(const ClusterState& state, WorkloadId first, size_t pending_members) {
  const GangId gang = state.workload(first).spec.gang;
  if (gang == kNone) return 1;
  const GangSpec& spec = state.gang(gang);
  const int bound = static_cast<int>(spec.members.size()) - static_cast<int>(pending_members);
  // Members beyond the minimum are welcome but optional; at least one must be placed.
  return std::max(1, spec.min_members - bound);
}

std::string CheckQuota(const ClusterState& state, const WorkloadSpec& spec,
                       const ResourceVec& charge) {
  char buf[192];
  for (QueueId q = spec.queue; q != kNone; q = state.queue(q).spec.parent) {
    const QueueState& queue = state.queue(q);
    for (int r = 0; r < kResourceCount; ++r) {
      const double after = queue.allocated.value[r] + charge.value[r];
      if (charge.value[r] > 0 && after > queue.spec.limit.value[r] + kQuotaEpsilon) {
        std::snprintf(buf, sizeof(buf), "queue '%s' would exceed its %s limit (%.3f > %.3f)",
                      queue.spec.name.c_str(), ResourceName(static_cast<Resource>(r)), after,
                      queue.spec.limit.value[r]);
        return buf;
      }
    }
    // Workloads that cannot be evicted may only use guaranteed (deserved) GPUs.
    const double gpu = charge[Resource::kGpu];
    if (!spec.preemptible && gpu > 0) {
      const double after = queue.allocated_non_preemptible[Resource::kGpu] + gpu;
      if (after > queue.spec.deserved[Resource::kGpu] + kQuotaEpsilon) {
        std::snprintf(buf, sizeof(buf),
                      "non-preemptible workloads of queue '%s' would exceed its deserved GPUs "
                      "(%.3f > %.3f)",
                      queue.spec.name.c_str(), after, queue.spec.deserved[Resource::kGpu]);
        return buf;
      }
    }
  }
  return "";
}

bool PlaceOne(CycleContext& ctx, WorkloadId id, const PlacementQuery& query, DecisionKind kind,
              Action action, const std::string& why, std::string* reason) {
  std::optional<Placement> placement = FindPlacement(ctx.state, id, query, reason);
  if (!placement) return false;
  const WorkloadSpec& spec = ctx.state.workload(id).spec;
  std::string quota = CheckQuota(ctx.state, spec, ctx.state.ChargeOf(spec, *placement));
  if (!quota.empty()) {
    *reason = std::move(quota);
    return false;
  }
  ctx.state.Bind(id, *placement);
  Decision d;
  d.kind = kind;
  d.action = action;
  d.workload = id;
  d.node = placement->node;
  for (const GpuSlice& s : placement->slices) d.gpus.push_back(s.gpu);
  d.reason = why;
  ctx.bind_decision[id] = ctx.decisions.size();
  ctx.decisions.push_back(std::move(d));
  return true;
}

namespace {

// Whether any node carries the label `key` (a gang's topology domains come from it).
bool AnyNodeLabelled(const ClusterState& state, const std::string& key) {
  for (NodeId n = 0; n < state.node_count(); ++n) {
    if (state.node(n).spec.labels.count(key) > 0) return true;
  }
  return false;
}

}  // namespace

// The topology domains (values of `key`) a gang may try, fullest first among those with at
// least `need` free GPU compute, so that gangs pack into domains like fractions into GPUs.
std::vector<std::string> DomainsFor(const ClusterState& state, const std::string& key,
                                    int64_t need) {
  std::map<std::string, int64_t> free;
  for (NodeId n = 0; n < state.node_count(); ++n) {
    const NodeState& node = state.node(n);
    auto it = node.spec.labels.find(key);
    if (it == node.spec.labels.end()) continue;
    int64_t& room = free[it->second];
    for (int g = 0; g < node.spec.gpu_count; ++g) room += state.gpu(node.first_gpu + g).free_milli;
  }
  std::vector<std::pair<int64_t, std::string>> fitting;
  for (const auto& [value, room] : free) {
    if (room >= need) fitting.push_back({room, value});
  }
  std::sort(fitting.begin(), fitting.end());
  std::vector<std::string> out;
  for (auto& [room, value] : fitting) out.push_back(std::move(value));
  return out;
}

// Places a gang's pending members: at least the required ones bind, in one transaction, or
// none do. A gang with a topology key tries one domain at a time (the one its running members
// are in, if any).
bool AllocateGang(CycleContext& ctx, WorkloadId first, std::string* reason) {
  ClusterState& state = ctx.state;
  const GangSpec& gang = state.gang(state.workload(first).spec.gang);
  const std::vector<WorkloadId> members = ItemMembers(state, first);
  const int required = RequiredMembers(state, first, members.size());
  std::vector<PlacementQuery> queries(1);
  if (!gang.topology_key.empty()) {
    queries.clear();
    std::vector<std::string> domains;
    for (WorkloadId m : gang.members) {
      if (state.workload(m).status != WorkloadStatus::kBound) continue;
      const auto& labels = state.node(state.workload(m).placement.node).spec.labels;
      auto it = labels.find(gang.topology_key);
      if (it != labels.end()) domains = {it->second};
      break;
    }
    if (domains.empty()) {
      double need = 0;
      for (size_t i = 0; i < members.size() && static_cast<int>(i) < required; ++i) {
        need += state.workload(members[i]).gpu_units;
      }
      domains = DomainsFor(state, gang.topology_key, static_cast<int64_t>(need * kMilliPerGpu));
    }
    for (std::string& d : domains) {
      if (static_cast<int>(queries.size()) >= kMaxDomainTries) break;
      PlacementQuery q;
      q.domain_key = gang.topology_key;
      q.domain_value = std::move(d);
      queries.push_back(std::move(q));
    }
    if (queries.empty()) {
      *reason = "gang '" + gang.name + "': " +
                (AnyNodeLabelled(state, gang.topology_key)
                     ? "no '" + gang.topology_key +
                           "' domain has enough free GPUs for its members together"
                     : "no node has a '" + gang.topology_key + "' label to keep its members in");
      return false;
    }
  }
  int best_bound = 0;
  std::string member_reason;
  for (const PlacementQuery& query : queries) {
    const CycleContext::Mark mark = ctx.Begin();
    int bound = 0;
    for (WorkloadId m : members) {
      if (PlaceOne(ctx, m, query, DecisionKind::kBind, Action::kAllocate,
                   "placed by allocate with its gang", &member_reason)) {
        ++bound;
      } else if (bound < required) {
        break;
      }
    }
    if (bound >= required) {
      const std::vector<WorkloadId> left = ItemMembers(state, first);
      if (!left.empty()) {
        // The gang runs; its optional members wait, as one item.
        ctx.failed.push_back(left.front());
        ctx.reasons[left.front()] =
            "optional member(s) of gang '" + gang.name + "' do not fit: " + member_reason;
      }
      return true;
    }
    best_bound = std::max(best_bound, bound);
    ctx.Rollback(mark);
  }
  *reason = "gang '" + gang.name + "' needs " + std::to_string(required) +
            " member(s) placed together" +
            (gang.topology_key.empty() ? "" : " in one '" + gang.topology_key + "' domain") +
            ", only " + std::to_string(best_bound) + " fit: " + member_reason;
  return false;
}

void RunAllocate(CycleContext& ctx) {
  ClusterState& state = ctx.state;
  std::vector<QueueCursor> cursors(state.queue_count());
  // Min-heap of (saturation, queue): the least served queue picks next.
  using Entry = std::pair<double, QueueId>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> order;
  for (QueueId q = 0; q < state.queue_count(); ++q) {
    if (!state.queue(q).IsLeaf() || state.pending(q).empty()) continue;
    for (const PendingKey& key : state.pending(q)) cursors[q].pending.push_back(key.id);
    order.push({QueueSaturation(ctx.fair_share, q, state.queue(q).allocated), q});
  }
  std::map<Shape, std::string> failed_shapes;
  std::unordered_set<GangId> gangs_done;
  while (!order.empty()) {
    const QueueId q = order.top().second;
    order.pop();
    QueueCursor& cursor = cursors[q];
    if (cursor.next >= cursor.pending.size()) continue;
    const WorkloadId id = cursor.pending[cursor.next++];
    const WorkloadState& w = state.workload(id);
    const bool is_gang = w.spec.gang != kNone;
    // A gang is handled once, at its first pending member.
    const bool skip =
        w.status != WorkloadStatus::kPending || (is_gang && !gangs_done.insert(w.spec.gang).second);
    if (!skip) {
      std::string reason;
      bool placed = false;
      auto shape_it = is_gang ? failed_shapes.end() : failed_shapes.find(ShapeOf(w.spec));
      if (shape_it != failed_shapes.end()) {
        reason = shape_it->second;
      } else if (!is_gang) {
        placed = PlaceOne(ctx, id, {}, DecisionKind::kBind, Action::kAllocate, "placed by allocate",
                          &reason);
        // Quota failures are the queue's, not the shape's.
        if (!placed && reason.rfind("queue", 0) != 0 && reason.rfind("non-preemptible", 0) != 0) {
          failed_shapes.emplace(ShapeOf(w.spec), reason);
        }
      } else {
        placed = AllocateGang(ctx, id, &reason);
      }
      if (!placed) {
        ctx.failed.push_back(id);
        ctx.reasons[id] = std::move(reason);
      }
    }
    if (cursor.next < cursor.pending.size()) {
      order.push({QueueSaturation(ctx.fair_share, q, state.queue(q).allocated), q});
    }
  }
}

}  // namespace gpufrac::sched
