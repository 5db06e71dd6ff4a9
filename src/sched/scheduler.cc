#include "sched/scheduler.h"

#include <chrono>

#include "sched/actions.h"
#include "sched/invariants.h"

namespace gpufrac::sched {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Times one action into *seconds.
template <typename Fn>
void Timed(double* seconds, Fn&& fn) {
  const Clock::time_point start = Clock::now();
  fn();
  *seconds = SecondsSince(start);
}

}  // namespace

const char* DecisionKindName(DecisionKind kind) {
  switch (kind) {
    case DecisionKind::kBind:
      return "bind";
    case DecisionKind::kEvict:
      return "evict";
    case DecisionKind::kNominate:
      return "nominate";
    case DecisionKind::kUnschedulable:
      return "unschedulable";
  }
  return "?";
}

const char* ActionName(Action action) {
  switch (action) {
    case Action::kAllocate:
      return "allocate";
    case Action::kConsolidate:
      return "consolidate";
    case Action::kReclaim:
      return "reclaim";
    case Action::kPreempt:
      return "preempt";
  }
  return "?";
}

CycleResult Scheduler::RunCycle(ClusterState& state) const {
  const Clock::time_point start = Clock::now();
  CycleContext ctx{state, config_, ComputeFairShare(state), {}, {}, {}, {}};
  CycleResult result;
  Timed(&result.stats.allocate_seconds, [&] { RunAllocate(ctx); });
  if (config_.consolidate) Timed(&result.stats.consolidate_seconds, [&] { RunConsolidate(ctx); });
  if (config_.reclaim) Timed(&result.stats.reclaim_seconds, [&] { RunReclaim(ctx); });
  if (config_.preempt) Timed(&result.stats.preempt_seconds, [&] { RunPreempt(ctx); });
  state.Commit();
  // Whatever is still pending gets its reason from allocate.
  for (WorkloadId id : ctx.failed) {
    for (WorkloadId m : ItemMembers(state, id)) {
      if (state.workload(m).status != WorkloadStatus::kPending) continue;
      Decision d;
      d.kind = DecisionKind::kUnschedulable;
      d.workload = m;
      d.reason = ctx.reasons[id];
      ctx.decisions.push_back(std::move(d));
    }
  }
  for (const Decision& d : ctx.decisions) {
    switch (d.kind) {
      case DecisionKind::kBind:
      case DecisionKind::kNominate:
        ++result.stats.binds;
        break;
      case DecisionKind::kEvict:
        ++result.stats.evictions;
        break;
      case DecisionKind::kUnschedulable:
        ++result.stats.unschedulable;
        break;
    }
  }
  result.decisions = std::move(ctx.decisions);
  result.fair_share = std::move(ctx.fair_share);
  result.stats.total_seconds = SecondsSince(start);
  if (config_.check_invariants) result.invariants = CheckInvariants(state);
  return result;
}

}  // namespace gpufrac::sched
