// Internal to the scheduler: the state one cycle's actions share, and the actions themselves.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "sched/placement.h"
#include "sched/scheduler.h"

namespace gpufrac::sched {

struct CycleContext {
  ClusterState& state;
  const SchedulerConfig& config;
  FairShare fair_share;
  std::vector<Decision> decisions;
  // Items allocate could not place, in the order it visited them (a gang by its first member),
  // and why. Later actions try them again and drop the ones they place.
  std::vector<WorkloadId> failed;
  std::unordered_map<WorkloadId, std::string> reasons;
  // Where each workload bound this cycle got its bind (or nominate) decision. Entries that a
  // rollback cut from `decisions` go stale; BoundThisCycle checks against what still stands.
  std::unordered_map<WorkloadId, size_t> bind_decision;

  // Whether the workload was bound by this cycle's standing decisions. Such a workload is
  // never a victim in the same cycle: it would be bound and evicted without ever running.
  bool BoundThisCycle(WorkloadId id) const {
    auto it = bind_decision.find(id);
    if (it == bind_decision.end() || it->second >= decisions.size()) return false;
    const Decision& d = decisions[it->second];
    return d.workload == id && (d.kind == DecisionKind::kBind || d.kind == DecisionKind::kNominate);
  }

  // A transaction spans the state's undo log and the decisions taken so far.
  struct Mark {
    size_t state;
    size_t decisions;
  };
  Mark Begin() const { return {state.Checkpoint(), decisions.size()}; }
  void Rollback(const Mark& mark) {
    state.Rollback(mark.state);
    decisions.resize(mark.decisions);
  }
};

// The pending workloads an item stands for: the gang's pending members, or the workload alone.
std::vector<WorkloadId> ItemMembers(const ClusterState& state, WorkloadId first);
// How many of `members` must be placed for the item to count as placed (gang minimum).
int RequiredMembers(const ClusterState& state, WorkloadId first, size_t pending_members);

// Empty when the workload may be charged `charge` in its queue; otherwise why not.
std::string CheckQuota(const ClusterState& state, const WorkloadSpec& spec,
                       const ResourceVec& charge);

// Places one workload where FindPlacement says (restricted as `query` says), checking
// quotas, and records a decision of `kind`. False with *reason when it cannot.
bool PlaceOne(CycleContext& ctx, WorkloadId id, const PlacementQuery& query, DecisionKind kind,
              Action action, const std::string& why, std::string* reason);

void RunAllocate(CycleContext& ctx);
void RunConsolidate(CycleContext& ctx);
void RunReclaim(CycleContext& ctx);
void RunPreempt(CycleContext& ctx);

}  // namespace gpufrac::sched
