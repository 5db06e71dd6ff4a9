// One scheduling cycle: the ordered actions allocate, consolidate, reclaim and preempt run over
// the incremental ClusterState and return decisions (bind, evict, nominate, unschedulable), each
// with a reason. No I/O: callers (the simulator, later a Kubernetes adapter) feed state in and
// carry decisions out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "sched/cluster_state.h"
#include "sched/fair_share.h"

namespace gpufrac::sched {

enum class DecisionKind {
  kBind,           // place the workload now
  kEvict,          // stop the workload and return it to pending
  kNominate,       // place the workload once the evictions decided with it have finished
  kUnschedulable,  // stays pending; the reason says what it lacks and where
};
enum class Action { kAllocate, kConsolidate, kReclaim, kPreempt };
const char* DecisionKindName(DecisionKind kind);
const char* ActionName(Action action);

struct Decision {
  DecisionKind kind = DecisionKind::kBind;
  Action action = Action::kAllocate;
  WorkloadId workload = kNone;
  NodeId node = kNone;
  std::vector<int32_t> gpus;
  std::string reason;
};

struct SchedulerConfig {
  bool consolidate = true;
  bool reclaim = true;
  bool preempt = true;
  // Bounds that keep the eviction actions' cost and disruption per cycle in check.
  int max_evictions_per_workload = 4;
  int max_attempts_per_action = 64;
  int max_candidate_nodes = 64;
  // Debug flag: verify the invariants after every cycle (costs a full pass over the state).
  bool check_invariants = false;
};

struct CycleStats {
  double allocate_seconds = 0;
  double consolidate_seconds = 0;
  double reclaim_seconds = 0;
  double preempt_seconds = 0;
  double total_seconds = 0;
  int binds = 0;
  int evictions = 0;
  int unschedulable = 0;
};

struct CycleResult {
  std::vector<Decision> decisions;
  CycleStats stats;
  FairShare fair_share;
  Status invariants;  // checked only with config.check_invariants
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig config) : config_(config) {}
  CycleResult RunCycle(ClusterState& state) const;
  const SchedulerConfig& config() const { return config_; }

 private:
  SchedulerConfig config_;
};

}  // namespace gpufrac::sched
