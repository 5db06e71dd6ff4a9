// The actions that make room by evicting: consolidate (move fractions to undo fragmentation),
// reclaim (queues below their fair share take back from queues above it) and preempt (higher
// priority evicts lower within a queue). Each tries one pending item as a transaction: evict a
// bounded set of victims on one node, place the item there, run the action's own checks, and roll
// everything back if any step fails.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>

#include "sched/actions.h"
#include "sched/placement.h"

namespace gpufrac::sched {
namespace {

constexpr double kRatioEpsilon = 1e-6;
// Topology domains a gang tries per eviction attempt, at most.
constexpr int kMaxGangDomains = 4;

using VictimFilter = std::function<bool(WorkloadId)>;
// Checks after the item is placed; returns an empty string to commit, else why not.
using Validator = std::function<std::string(const std::vector<WorkloadId>& victims)>;

// Cheapest victim first: lowest priority, then the most recently started.
bool CheaperVictim(const ClusterState& state, WorkloadId a, WorkloadId b) {
  const WorkloadState& wa = state.workload(a);
  const WorkloadState& wb = state.workload(b);
  if (wa.spec.priority != wb.spec.priority) return wa.spec.priority < wb.spec.priority;
  return wa.sequence > wb.sequence;
}

// Victims are evicted together with the bound members of their gang (all-or-nothing).
std::vector<WorkloadId> WithGang(const ClusterState& state, WorkloadId v) {
  const GangId gang = state.workload(v).spec.gang;
  if (gang == kNone) return {v};
  std::vector<WorkloadId> out;
  for (WorkloadId m : state.gang(gang).members) {
    if (state.workload(m).status == WorkloadStatus::kBound) out.push_back(m);
  }
  return out;
}

bool Eligible(const ClusterState& state, WorkloadId v, const VictimFilter& filter) {
  for (WorkloadId m : WithGang(state, v)) {
    if (!filter(m)) return false;
  }
  return true;
}

// How much a set of victims costs: fewer first, then the least important, then the newest.
struct VictimCost {
  size_t count = 0;
  int max_priority = 0;
  int64_t oldest_sequence_negated = 0;
  bool operator<(const VictimCost& o) const {
    if (count != o.count) return count < o.count;
    if (max_priority != o.max_priority) return max_priority < o.max_priority;
    return oldest_sequence_negated < o.oldest_sequence_negated;
  }
};

VictimCost CostOf(const ClusterState& state, const std::vector<WorkloadId>& victims) {
  VictimCost cost;
  cost.count = victims.size();
  int64_t oldest = INT64_MAX;
  cost.max_priority = INT32_MIN;
  for (WorkloadId v : victims) {
    cost.max_priority = std::max(cost.max_priority, state.workload(v).spec.priority);
    oldest = std::min(oldest, state.workload(v).sequence);
  }
  cost.oldest_sequence_negated = victims.empty() ? 0 : -oldest;
  return cost;
}

struct VictimPlan {
  NodeId node = kNone;
  std::vector<WorkloadId> victims;  // gangs expanded
};

class NodePlanner {
 public:
  NodePlanner(const ClusterState& state, const WorkloadSpec& spec, const VictimFilter& filter)
      : state_(state), spec_(spec), filter_(filter) {}

  std::optional<VictimPlan> Plan(NodeId node, int max_victims) {
    if (!NodeMatches(state_, spec_, node)) return std::nullopt;
    const bool needs_gpu = spec_.gpu.kind != GpuRequestKind::kNoGpu;
    if (needs_gpu && state_.node(node).spec.gpu_count == 0) return std::nullopt;
    chosen_.clear();
    plan_ = VictimPlan{node, {}};
    const NodeState& n = state_.node(node);
    if (spec_.gpu.IsFraction() && !PlanFraction(n)) return std::nullopt;
    if (spec_.gpu.kind == GpuRequestKind::kWhole && !PlanWhole(n)) return std::nullopt;
    if (!PlanNodeResources(n)) return std::nullopt;
    if (static_cast<int>(plan_.victims.size()) > max_victims) return std::nullopt;
    return plan_;
  }

 private:
  void Take(WorkloadId v) {
    if (chosen_.count(v)) return;
    for (WorkloadId m : WithGang(state_, v)) {
      if (chosen_.insert(m).second) plan_.victims.push_back(m);
    }
  }

  std::vector<WorkloadId> EligibleSorted(const std::vector<WorkloadId>& tenants) const {
    std::vector<WorkloadId> out;
    for (WorkloadId t : tenants) {
      if (Eligible(state_, t, filter_)) out.push_back(t);
    }
    std::sort(out.begin(), out.end(),
              [this](WorkloadId a, WorkloadId b) { return CheaperVictim(state_, a, b); });
    return out;
  }

  // Slice of workload `v` on GPU `g`.
  const GpuSlice* SliceOn(WorkloadId v, int32_t g) const {
    for (const GpuSlice& s : state_.workload(v).placement.slices) {
      if (s.gpu == g) return &s;
    }
    return nullptr;
  }

  bool PlanFraction(const NodeState& n) {
    int64_t milli = 0;
    uint64_t memory = 0;
    if (!state_.FractionNeed(spec_.gpu, n.pool, &milli, &memory)) return false;
    int32_t best_gpu = kNone;
    std::vector<WorkloadId> best;
    for (int i = 0; i < n.spec.gpu_count; ++i) {
      const int32_t g = n.first_gpu + i;
      const GpuState& gpu = state_.gpu(g);
      int64_t free_milli = gpu.free_milli;
      uint64_t free_memory = gpu.free_memory;
      std::vector<WorkloadId> victims;
      for (WorkloadId t : EligibleSorted(gpu.tenants)) {
        if (free_milli >= milli && free_memory >= memory) break;
        const GpuSlice* s = SliceOn(t, g);
        free_milli += s->milli;
        free_memory += s->memory;
        victims.push_back(t);
      }
      if (free_milli < milli || free_memory < memory) continue;
      if (best_gpu == kNone || CostOf(state_, victims) < CostOf(state_, best)) {
        best_gpu = g;
        best = victims;
      }
    }
    if (best_gpu == kNone) return false;
    for (WorkloadId v : best) Take(v);
    return true;
  }

  bool PlanWhole(const NodeState& n) {
    // GPUs that can be cleared, by how many workloads must go.
    std::vector<std::pair<VictimCost, int32_t>> clearable;
    for (int i = 0; i < n.spec.gpu_count; ++i) {
      const int32_t g = n.first_gpu + i;
      const GpuState& gpu = state_.gpu(g);
      const std::vector<WorkloadId> eligible = EligibleSorted(gpu.tenants);
      if (eligible.size() != gpu.tenants.size()) continue;
      clearable.push_back({CostOf(state_, gpu.tenants), g});
    }
    if (static_cast<int>(clearable.size()) < spec_.gpu.count) return false;
    std::sort(clearable.begin(), clearable.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (int i = 0; i < spec_.gpu.count; ++i) {
      for (WorkloadId t : state_.gpu(clearable[i].second).tenants) Take(t);
    }
    return true;
  }

  bool PlanNodeResources(const NodeState& n) {
    auto freed = [&](int64_t* cpu, uint64_t* mem) {
      *cpu = n.free_cpu_milli;
      *mem = n.free_memory;
      for (WorkloadId v : plan_.victims) {
        if (state_.workload(v).placement.node != plan_.node) continue;
        *cpu += state_.workload(v).spec.cpu_milli;
        *mem += state_.workload(v).spec.memory_bytes;
      }
    };
    int64_t cpu = 0;
    uint64_t mem = 0;
    freed(&cpu, &mem);
    if (cpu >= spec_.cpu_milli && mem >= spec_.memory_bytes) return true;
    for (WorkloadId t : EligibleSorted(n.tenants)) {
      if (chosen_.count(t)) continue;
      Take(t);
      freed(&cpu, &mem);
      if (cpu >= spec_.cpu_milli && mem >= spec_.memory_bytes) return true;
    }
    return false;
  }

  const ClusterState& state_;
  const WorkloadSpec& spec_;
  const VictimFilter& filter_;
  std::unordered_set<WorkloadId> chosen_;
  VictimPlan plan_;
};

// The cheapest plan for `spec` over `candidates` (the first found without victims, if any).
std::optional<VictimPlan> CheapestPlan(const ClusterState& state, const WorkloadSpec& spec,
                                       const VictimFilter& filter,
                                       const std::vector<NodeId>& candidates, int max_victims) {
  NodePlanner planner(state, spec, filter);
  std::optional<VictimPlan> best;
  for (NodeId node : candidates) {
    std::optional<VictimPlan> plan = planner.Plan(node, max_victims);
    if (plan && (!best || CostOf(state, plan->victims) < CostOf(state, best->victims))) {
      best = std::move(plan);
    }
    if (best && best->victims.empty()) break;
  }
  return best;
}

// Every plan for `spec` over `candidates`, one per node, cheapest first.
std::vector<VictimPlan> PlansByCost(const ClusterState& state, const WorkloadSpec& spec,
                                    const VictimFilter& filter,
                                    const std::vector<NodeId>& candidates, int max_victims) {
  NodePlanner planner(state, spec, filter);
  std::vector<std::pair<VictimCost, VictimPlan>> costed;
  for (NodeId node : candidates) {
    if (std::optional<VictimPlan> plan = planner.Plan(node, max_victims)) {
      costed.push_back({CostOf(state, plan->victims), std::move(*plan)});
    }
  }
  // Stable: equal costs keep the candidates' order, as CheapestPlan does.
  std::stable_sort(costed.begin(), costed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<VictimPlan> plans;
  plans.reserve(costed.size());
  for (auto& [cost, plan] : costed) plans.push_back(std::move(plan));
  return plans;
}

enum class TryResult { kPlaced, kNoRoom, kRejected };

// One attempt at placing the item `first` (a workload or its gang) by evicting victims that pass
// `filter` on one of `candidates`: the first member takes `first_plan` when given, the others
// (and the first, without it) their cheapest plan. Commits only when every step and `validate`
// succeed.
TryResult TryPlans(CycleContext& ctx, WorkloadId first, Action action,
                   const std::vector<NodeId>& candidates, const VictimFilter& filter,
                   const Validator& validate, const VictimPlan* first_plan) {
  ClusterState& state = ctx.state;
  const std::vector<WorkloadId> members = ItemMembers(state, first);
  const int required = RequiredMembers(state, first, members.size());
  const CycleContext::Mark mark = ctx.Begin();
  std::vector<WorkloadId> all_victims;
  int placed = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    const WorkloadId m = members[i];
    const WorkloadSpec& spec = state.workload(m).spec;
    const std::optional<VictimPlan> best =
        i == 0 && first_plan != nullptr
            ? std::optional<VictimPlan>(*first_plan)
            : CheapestPlan(state, spec, filter, candidates, ctx.config.max_evictions_per_workload);
    std::string reason;
    bool ok = false;
    if (best) {
      const std::string why = std::string(ActionName(action)) + ": to make room for '" + spec.name +
                              "' on node '" + state.node(best->node).spec.name + "'";
      const CycleContext::Mark member_mark = ctx.Begin();
      for (WorkloadId v : best->victims) {
        Decision d;
        d.kind = DecisionKind::kEvict;
        d.action = action;
        d.workload = v;
        d.node = state.workload(v).placement.node;
        d.reason = why;
        ctx.decisions.push_back(std::move(d));
        state.Unbind(v);
      }
      // A gang member may find free room next to members that needed evictions.
      const DecisionKind kind =
          best->victims.empty() ? DecisionKind::kBind : DecisionKind::kNominate;
      ok = PlaceOne(ctx, m, PlacementQuery{best->node, "", ""}, kind, action,
                    std::string(ActionName(action)) + ": after " +
                        std::to_string(best->victims.size()) + " eviction(s)",
                    &reason);
      if (ok) {
        all_victims.insert(all_victims.end(), best->victims.begin(), best->victims.end());
      } else {
        ctx.Rollback(member_mark);
      }
    }
    if (ok) {
      ++placed;
    } else if (placed < required) {
      break;
    }
  }
  if (placed < required) {
    ctx.Rollback(mark);
    return TryResult::kNoRoom;
  }
  if (!validate(all_victims).empty()) {
    ctx.Rollback(mark);
    return TryResult::kRejected;
  }
  return TryResult::kPlaced;
}

// Plans reclaim's order check may reject before the item gives up, cheapest first: the cheapest
// victims may be in a queue that must keep them, acceptable ones on another node. Consolidate
// keeps to its cheapest plan (each further try re-places every victim).
constexpr int kReclaimPlans = 4;

// Tries the item's cheapest plan, then, while `validate` rejects them, the first member's next
// cheapest ones, `plans` in all.
bool TryOnNodes(CycleContext& ctx, WorkloadId first, Action action,
                const std::vector<NodeId>& candidates, const VictimFilter& filter,
                const Validator& validate, int plans) {
  TryResult result = TryPlans(ctx, first, action, candidates, filter, validate, nullptr);
  if (result != TryResult::kRejected || plans <= 1) return result == TryResult::kPlaced;
  // Rolled back, the state is as it was: rank the first member's plans once.
  const WorkloadSpec& spec = ctx.state.workload(ItemMembers(ctx.state, first).front()).spec;
  const std::vector<VictimPlan> ranked =
      PlansByCost(ctx.state, spec, filter, candidates, ctx.config.max_evictions_per_workload);
  for (size_t rank = 1; rank < ranked.size() && static_cast<int>(rank) < plans; ++rank) {
    result = TryPlans(ctx, first, action, candidates, filter, validate, &ranked[rank]);
    if (result != TryResult::kRejected) return result == TryResult::kPlaced;
  }
  return false;
}

// As TryOnNodes; a gang with a topology key tries the candidate nodes one domain at a time
// (only its running members' domain, if it has any), so that it never spans two domains.
bool TryWithEvictions(CycleContext& ctx, WorkloadId first, Action action,
                      const std::vector<NodeId>& candidates, const VictimFilter& filter,
                      const Validator& validate, int plans = 1) {
  const ClusterState& state = ctx.state;
  const GangId gang = state.workload(first).spec.gang;
  if (gang == kNone || state.gang(gang).topology_key.empty()) {
    return TryOnNodes(ctx, first, action, candidates, filter, validate, plans);
  }
  const std::string& key = state.gang(gang).topology_key;
  auto domain_of = [&](NodeId n) {
    auto it = state.node(n).spec.labels.find(key);
    return it == state.node(n).spec.labels.end() ? std::string() : it->second;
  };
  std::string fixed;
  for (WorkloadId m : state.gang(gang).members) {
    if (state.workload(m).status == WorkloadStatus::kBound) {
      fixed = domain_of(state.workload(m).placement.node);
      break;
    }
  }
  // Domains in the order their first candidate node appears (the cheapest victims first).
  std::vector<std::string> order;
  std::map<std::string, std::vector<NodeId>> by_domain;
  for (NodeId n : candidates) {
    const std::string d = domain_of(n);
    if (d.empty() || (!fixed.empty() && d != fixed)) continue;
    if (by_domain[d].empty()) order.push_back(d);
    by_domain[d].push_back(n);
  }
  if (order.size() > static_cast<size_t>(kMaxGangDomains)) order.resize(kMaxGangDomains);
  // Nodes of those domains without victims may still hold free room for some members.
  std::map<std::string, std::unordered_set<NodeId>> listed;
  for (const std::string& d : order) listed[d].insert(by_domain[d].begin(), by_domain[d].end());
  for (NodeId n = 0; n < state.node_count(); ++n) {
    auto it = listed.find(domain_of(n));
    if (it != listed.end() && it->second.insert(n).second) by_domain[it->first].push_back(n);
  }
  for (const std::string& d : order) {
    if (TryOnNodes(ctx, first, action, by_domain[d], filter, validate, plans)) return true;
  }
  return false;
}

// Whether the item still has members waiting (a gang may have placed only its required ones).
bool StillPending(const ClusterState& state, WorkloadId id) {
  if (state.workload(id).spec.gang == kNone) {
    return state.workload(id).status == WorkloadStatus::kPending;
  }
  return !ItemMembers(state, id).empty();
}

// What an action made of one failed item. Cheap refusals (not applicable) do not count against
// the per-cycle bound on attempts.
enum class Attempt { kNotApplicable, kFailed, kPlaced };

Attempt Tried(bool placed) { return placed ? Attempt::kPlaced : Attempt::kFailed; }

// Runs `attempt` on the failed items in allocate's order, within the per-cycle bound, and drops
// the ones it placed.
void ForFailed(CycleContext& ctx, const std::function<Attempt(WorkloadId)>& attempt) {
  int attempts = 0;
  std::vector<WorkloadId> remaining;
  for (WorkloadId id : ctx.failed) {
    if (!StillPending(ctx.state, id)) continue;
    if (attempts < ctx.config.max_attempts_per_action) {
      const Attempt result = attempt(id);
      if (result != Attempt::kNotApplicable) ++attempts;
      if (result == Attempt::kPlaced && !StillPending(ctx.state, id)) continue;
    }
    remaining.push_back(id);
  }
  ctx.failed = std::move(remaining);
}

void AddNode(std::vector<NodeId>* nodes, std::unordered_set<NodeId>* seen, NodeId n) {
  if (seen->insert(n).second) nodes->push_back(n);
}

double QueueRatio(const CycleContext& ctx, QueueId q) {
  return QueueSaturation(ctx.fair_share, q, ctx.state.queue(q).allocated);
}

}  // namespace

void RunConsolidate(CycleContext& ctx) {
  ClusterState& state = ctx.state;
  ForFailed(ctx, [&](WorkloadId id) {
    const WorkloadSpec& spec = state.workload(id).spec;
    // Only fragmentation: the GPU request fails though enough is free in total.
    if (spec.gpu.kind == GpuRequestKind::kNoGpu || spec.gang != kNone)
      return Attempt::kNotApplicable;
    if (ctx.reasons[id].rfind("no node", 0) != 0) return Attempt::kNotApplicable;
    int64_t need = spec.gpu.kind == GpuRequestKind::kWhole ? spec.gpu.count * kMilliPerGpu : 0;
    int64_t free_total = 0;
    std::vector<NodeId> candidates;
    std::unordered_set<NodeId> seen;
    for (size_t p = 0; p < state.pools().size(); ++p) {
      const GpuPool& pool = state.pools()[p];
      if (!spec.gpu_type.empty() && pool.type != spec.gpu_type) continue;
      int64_t milli = 0;
      uint64_t memory = 0;
      if (spec.gpu.IsFraction() &&
          !state.FractionNeed(spec.gpu, static_cast<int32_t>(p), &milli, &memory)) {
        continue;
      }
      need = std::max(need, milli);
      free_total += pool.free_milli_total;
      // Most free room first: the fewest moves make space there.
      for (auto it = pool.partial_gpus.rbegin(); it != pool.partial_gpus.rend(); ++it) {
        if (static_cast<int>(candidates.size()) >= ctx.config.max_candidate_nodes) break;
        AddNode(&candidates, &seen, state.gpu(it->second).node);
      }
      for (auto it = pool.nodes_by_free.rbegin(); it != pool.nodes_by_free.rend(); ++it) {
        if (static_cast<int>(candidates.size()) >= 2 * ctx.config.max_candidate_nodes) break;
        AddNode(&candidates, &seen, it->second);
      }
    }
    if (free_total < need || candidates.empty()) return Attempt::kNotApplicable;
    auto movable = [&](WorkloadId v) {
      const WorkloadSpec& s = state.workload(v).spec;
      return v != id && s.gang == kNone && (s.gpu.IsFraction() || s.preemptible) &&
             !ctx.BoundThisCycle(v);
    };
    // Every moved workload must find a place again, elsewhere.
    auto replace_all = [&](const std::vector<WorkloadId>& victims) -> std::string {
      for (WorkloadId v : victims) {
        std::string reason;
        if (!PlaceOne(ctx, v, {}, DecisionKind::kBind, Action::kConsolidate,
                      "consolidate: moved to make room for '" + spec.name + "'", &reason)) {
          return reason;
        }
      }
      return "";
    };
    return Tried(TryWithEvictions(ctx, id, Action::kConsolidate, candidates, movable, replace_all));
  });
}

void RunReclaim(CycleContext& ctx) {
  ClusterState& state = ctx.state;
  ForFailed(ctx, [&](WorkloadId id) {
    const WorkloadSpec& spec = state.workload(id).spec;
    const QueueId q = spec.queue;
    ResourceVec after = state.queue(q).allocated;
    after += DemandOf(state.workload(id));
    // Only a queue that stays within its fair share with this workload may reclaim.
    if (QueueSaturation(ctx.fair_share, q, after) > 1 + kRatioEpsilon)
      return Attempt::kNotApplicable;
    // Victims come from leaf queues above their fair share, the most saturated first.
    std::vector<std::pair<double, QueueId>> over;
    for (QueueId v = 0; v < state.queue_count(); ++v) {
      if (v == q || !state.queue(v).IsLeaf()) continue;
      const double ratio = QueueRatio(ctx, v);
      if (ratio > 1 + kRatioEpsilon) over.push_back({-ratio, v});
    }
    if (over.empty()) return Attempt::kNotApplicable;
    std::sort(over.begin(), over.end());
    std::vector<NodeId> candidates;
    std::unordered_set<NodeId> seen;
    std::unordered_set<QueueId> victim_queues;
    for (const auto& [neg_ratio, v] : over) {
      victim_queues.insert(v);
      for (const RunningKey& key : state.running(v)) {
        if (static_cast<int>(candidates.size()) >= ctx.config.max_candidate_nodes) break;
        if (!state.workload(key.id).spec.preemptible) continue;
        AddNode(&candidates, &seen, state.workload(key.id).placement.node);
      }
    }
    auto filter = [&](WorkloadId v) {
      const WorkloadSpec& s = state.workload(v).spec;
      return s.preemptible && victim_queues.count(s.queue) > 0 && !ctx.BoundThisCycle(v);
    };
    // Saturation order is kept: no victim queue is pushed below its own fair share to end up
    // less saturated than the reclaimer. What a victim held of a resource its queue has no share
    // of was all borrowed; giving it back leaves the queue at its share (of nothing) there.
    auto keeps_order = [&](const std::vector<WorkloadId>& victims) -> std::string {
      const double mine = QueueRatio(ctx, q);
      std::map<QueueId, ResourceVec> freed;
      for (WorkloadId v : victims)
        freed[state.workload(v).spec.queue] += DemandOf(state.workload(v));
      for (const auto& [vq, given_back] : freed) {
        double theirs = QueueRatio(ctx, vq);
        for (int r = 0; r < kResourceCount; ++r) {
          const bool no_share =
              !ctx.fair_share.entitled[vq][r] || ctx.fair_share.share[vq].value[r] <= kRatioEpsilon;
          if (given_back.value[r] > kRatioEpsilon && no_share) theirs = std::max(theirs, 1.0);
        }
        if (theirs + kRatioEpsilon < std::min(mine, 1.0)) {
          return "reclaim would invert the queues' order";
        }
      }
      return "";
    };
    return Tried(TryWithEvictions(ctx, id, Action::kReclaim, candidates, filter, keeps_order,
                                  kReclaimPlans));
  });
}

void RunPreempt(CycleContext& ctx) {
  ClusterState& state = ctx.state;
  ForFailed(ctx, [&](WorkloadId id) {
    const WorkloadSpec& spec = state.workload(id).spec;
    std::vector<NodeId> candidates;
    std::unordered_set<NodeId> seen;
    for (const RunningKey& key : state.running(spec.queue)) {
      if (key.priority >= spec.priority) break;  // cheapest first: the rest are not lower
      if (static_cast<int>(candidates.size()) >= ctx.config.max_candidate_nodes) break;
      if (!state.workload(key.id).spec.preemptible) continue;
      AddNode(&candidates, &seen, state.workload(key.id).placement.node);
    }
    if (candidates.empty()) return Attempt::kNotApplicable;
    auto lower = [&](WorkloadId v) {
      const WorkloadSpec& s = state.workload(v).spec;
      return s.queue == spec.queue && s.preemptible && s.priority < spec.priority &&
             !ctx.BoundThisCycle(v);
    };
    auto any = [](const std::vector<WorkloadId>&) { return std::string(); };
    return Tried(TryWithEvictions(ctx, id, Action::kPreempt, candidates, lower, any));
  });
}

}  // namespace gpufrac::sched
