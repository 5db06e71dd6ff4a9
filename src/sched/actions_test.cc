// One test group per action: allocate (queue order, priorities, gangs, quotas), consolidate,
// reclaim and preempt. Every cycle also checks the invariants.
#include <gtest/gtest.h>

#include <algorithm>

#include "sched/scheduler.h"
#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

using testing::CheckedConfig;
using testing::Fraction;
using testing::Node;
using testing::Queue;
using testing::Where;
using testing::Whole;

CycleResult Cycle(ClusterState& s, SchedulerConfig config = CheckedConfig()) {
  config.check_invariants = true;
  CycleResult r = Scheduler(config).RunCycle(s);
  EXPECT_TRUE(r.invariants.ok()) << r.invariants.message();
  return r;
}

const Decision* Find(const CycleResult& r, WorkloadId id, DecisionKind kind) {
  for (const Decision& d : r.decisions) {
    if (d.workload == id && d.kind == kind) return &d;
  }
  return nullptr;
}

int Count(const CycleResult& r, DecisionKind kind, Action action) {
  return static_cast<int>(
      std::count_if(r.decisions.begin(), r.decisions.end(),
                    [&](const Decision& d) { return d.kind == kind && d.action == action; }));
}

TEST(AllocateTest, LeastServedQueueGoesFirst) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId a = s.AddQueue(Queue("a", 1));
  const QueueId b = s.AddQueue(Queue("b", 1));
  // a asks first and for more, but b is owed one GPU as much as a is.
  const WorkloadId a0 = s.AddWorkload(Whole("a0", a, 1));
  const WorkloadId a1 = s.AddWorkload(Whole("a1", a, 1));
  const WorkloadId b0 = s.AddWorkload(Whole("b0", b, 1));
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, a0), "pending");
  EXPECT_NE(Where(s, b0), "pending");
  EXPECT_EQ(Where(s, a1), "pending");
  const Decision* d = Find(r, a1, DecisionKind::kUnschedulable);
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d->reason.find("no node has room for 1 whole GPU(s)"), std::string::npos) << d->reason;
}

TEST(AllocateTest, HigherPriorityFirstWithinQueue) {
  ClusterState s;
  s.AddNode(Node("n0", 1));
  const QueueId q = s.AddQueue(Queue("q", 1));
  const WorkloadId batch = s.AddWorkload(Whole("batch", q, 1, 50));
  const WorkloadId infer = s.AddWorkload(Whole("infer", q, 1, 125, false));
  Cycle(s);
  EXPECT_EQ(Where(s, infer), "n0/0");
  EXPECT_EQ(Where(s, batch), "pending");
}

TEST(AllocateTest, GangIsAllOrNothing) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  s.AddNode(Node("n1", 1));
  const QueueId q = s.AddQueue(Queue("q", 4));
  const GangId big = s.AddGang("big", 4);
  const GangId fits = s.AddGang("fits", 3);
  std::vector<WorkloadId> big_members;
  std::vector<WorkloadId> fit_members;
  for (int i = 0; i < 4; ++i) {
    WorkloadSpec m = Whole("big-" + std::to_string(i), q, 1, 60);
    m.gang = big;
    big_members.push_back(s.AddWorkload(m));
  }
  for (int i = 0; i < 3; ++i) {
    WorkloadSpec m = Whole("fit-" + std::to_string(i), q, 1);
    m.gang = fits;
    fit_members.push_back(s.AddWorkload(m));
  }
  const CycleResult r = Cycle(s);
  for (WorkloadId m : big_members) EXPECT_EQ(Where(s, m), "pending");
  for (WorkloadId m : fit_members) EXPECT_NE(Where(s, m), "pending");
  const Decision* d = Find(r, big_members[0], DecisionKind::kUnschedulable);
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d->reason.find("gang 'big' needs 4 member(s)"), std::string::npos) << d->reason;
}

TEST(AllocateTest, TopologyGangStaysInOneDomain) {
  ClusterState s;
  for (int i = 0; i < 4; ++i) {
    NodeSpec n = Node("n" + std::to_string(i), 2);
    n.labels["rack"] = i < 2 ? "r0" : "r1";
    s.AddNode(n);
  }
  const QueueId q = s.AddQueue(Queue("q", 8));
  const WorkloadId filler = s.AddWorkload(Fraction("filler", q, 0.5));
  Cycle(s);
  ASSERT_EQ(Where(s, filler), "n0/0");
  // Three whole GPUs are free in either rack; r0 is fuller, so bin-packing picks it.
  const GangId g = s.AddGang("g", 3, "rack");
  std::vector<WorkloadId> members;
  for (int i = 0; i < 3; ++i) {
    WorkloadSpec m = Whole("m" + std::to_string(i), q, 1);
    m.gang = g;
    members.push_back(s.AddWorkload(m));
  }
  Cycle(s);
  for (WorkloadId m : members) {
    ASSERT_NE(Where(s, m), "pending");
    EXPECT_EQ(s.node(s.workload(m).placement.node).spec.labels.at("rack"), "r0");
  }
}

// The per-cycle memo of failed shapes must not leak a queue's quota failure, or one rack's
// shortage, to other workloads of the same shape.
TEST(AllocateTest, FailedShapeMemoIsPerQueueQuotaAndSelector) {
  ClusterState s;
  NodeSpec r0 = Node("r0", 1);
  r0.labels["rack"] = "r0";
  NodeSpec r1 = Node("r1", 3);
  r1.labels["rack"] = "r1";
  s.AddNode(r0);
  s.AddNode(r1);
  QueueSpec capped = Queue("capped", 0);
  capped.limit[Resource::kGpu] = 0.5;
  const QueueId a = s.AddQueue(capped);
  const QueueId b = s.AddQueue(Queue("b", 0));
  // Fractions kept in rack r1, leaving r0's single GPU to the whole-GPU workloads below.
  auto fraction = [](const std::string& name, QueueId q) {
    WorkloadSpec w = Fraction(name, q, 0.5);
    w.node_selector["rack"] = "r1";
    return w;
  };
  const WorkloadId a0 = s.AddWorkload(fraction("a0", a));
  const WorkloadId a1 = s.AddWorkload(fraction("a1", a));  // over a's limit
  const WorkloadId b0 = s.AddWorkload(fraction("b0", b));  // same shape, other queue
  WorkloadSpec in_r0 = Whole("in-r0", b, 1);
  in_r0.node_selector["rack"] = "r0";
  WorkloadSpec in_r1 = in_r0;
  in_r1.name = "in-r1";
  in_r1.node_selector["rack"] = "r1";
  const WorkloadId fill_r0 = s.AddWorkload(in_r0);
  in_r0.name = "in-r0-again";
  const WorkloadId r0_again = s.AddWorkload(in_r0);  // r0 is full by now
  const WorkloadId r1_ok = s.AddWorkload(in_r1);
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, a0), "pending");
  EXPECT_EQ(Where(s, a1), "pending");
  EXPECT_NE(Where(s, b0), "pending");
  EXPECT_EQ(Where(s, fill_r0).substr(0, 2), "r0");
  EXPECT_EQ(Where(s, r0_again), "pending");
  EXPECT_EQ(Where(s, r1_ok).substr(0, 2), "r1");
  // Placed by allocate itself, not rescued later by an eviction action.
  const Decision* bind = Find(r, r1_ok, DecisionKind::kBind);
  ASSERT_NE(bind, nullptr);
  EXPECT_EQ(bind->action, Action::kAllocate);
  const Decision* d = Find(r, a1, DecisionKind::kUnschedulable);
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d->reason.find("limit"), std::string::npos) << d->reason;
}

TEST(AllocateTest, QueueLimitIsNeverExceeded) {
  ClusterState s;
  s.AddNode(Node("n0", 8));
  QueueSpec spec = Queue("q", 1);
  spec.limit[Resource::kGpu] = 1.5;
  const QueueId q = s.AddQueue(spec);
  const WorkloadId a = s.AddWorkload(Whole("a", q, 1));
  const WorkloadId b = s.AddWorkload(Fraction("b", q, 0.75));
  const WorkloadId c = s.AddWorkload(Fraction("c", q, 0.5));
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, a), "pending");
  EXPECT_EQ(Where(s, b), "pending");
  EXPECT_NE(Where(s, c), "pending");
  const Decision* d = Find(r, b, DecisionKind::kUnschedulable);
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d->reason.find("queue 'q' would exceed its gpu limit"), std::string::npos) << d->reason;
}

TEST(AllocateTest, NonPreemptibleStaysWithinDeserved) {
  ClusterState s;
  s.AddNode(Node("n0", 8));
  const QueueId q = s.AddQueue(Queue("q", 1));
  const WorkloadId a = s.AddWorkload(Whole("a", q, 1, 125, false));
  const WorkloadId b = s.AddWorkload(Fraction("b", q, 0.5, 125, false));
  const WorkloadId c =
      s.AddWorkload(Fraction("c", q, 0.5, 50, true));  // preemptible: over quota ok
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, a), "pending");
  EXPECT_EQ(Where(s, b), "pending");
  EXPECT_NE(Where(s, c), "pending");
  EXPECT_NE(Find(r, b, DecisionKind::kUnschedulable)->reason.find("deserved"), std::string::npos);
}

TEST(ConsolidateTest, MovesFractionsToFreeAWholeGpu) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId q = s.AddQueue(Queue("q", 2));
  // Two half GPUs left on two different GPUs: 1 GPU free in total, none whole.
  const WorkloadId x = s.AddWorkload(Fraction("x", q, 0.5));
  const WorkloadId y = s.AddWorkload(Fraction("y", q, 0.5));
  Cycle(s);
  ASSERT_EQ(Where(s, x), "n0/0");
  ASSERT_EQ(Where(s, y), "n0/0");
  // Re-create fragmentation by hand: move y to GPU 1.
  s.Unbind(y);
  s.Bind(y, Placement{0, {{1, 500, s.gpu(1).memory / 2}}});
  s.Commit();
  const WorkloadId whole = s.AddWorkload(Whole("whole", q, 1));
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, whole), "pending");
  EXPECT_EQ(Where(s, x), Where(s, y));  // packed together on the other GPU
  EXPECT_EQ(Count(r, DecisionKind::kEvict, Action::kConsolidate), 1);
  EXPECT_EQ(Count(r, DecisionKind::kBind, Action::kConsolidate), 1);
  EXPECT_EQ(Count(r, DecisionKind::kNominate, Action::kConsolidate), 1);
}

TEST(ConsolidateTest, RefusesWhenMovedWorkloadsCannotBePlacedAgain) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId q = s.AddQueue(Queue("q", 2));
  const WorkloadId x = s.AddWorkload(Fraction("x", q, 0.75));
  const WorkloadId y = s.AddWorkload(Fraction("y", q, 0.75));
  Cycle(s);
  ASSERT_NE(Where(s, x), Where(s, y));
  // 0.5 free in total, but no arrangement of two 0.75s frees a 0.5 slot.
  const WorkloadId z = s.AddWorkload(Fraction("z", q, 0.5));
  const CycleResult r = Cycle(s);
  EXPECT_EQ(Where(s, z), "pending");
  EXPECT_EQ(r.stats.evictions, 0);
}

TEST(ConsolidateTest, EvictionsAreBounded) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId q = s.AddQueue(Queue("q", 2));
  std::vector<WorkloadId> small;
  for (int i = 0; i < 10; ++i)
    small.push_back(s.AddWorkload(Fraction("s" + std::to_string(i), q, 0.1)));
  Cycle(s);
  // Spread the ten tenths five per GPU: 1 GPU free in total, in two halves.
  for (int i = 5; i < 10; ++i) {
    s.Unbind(small[i]);
    s.Bind(small[i], Placement{0, {{1, 100, s.gpu(1).memory / 10}}});
  }
  s.Commit();
  const WorkloadId whole = s.AddWorkload(Whole("whole", q, 1));
  SchedulerConfig config = CheckedConfig();
  config.max_evictions_per_workload = 4;  // five would have to move
  Cycle(s, config);
  EXPECT_EQ(Where(s, whole), "pending");
  config.max_evictions_per_workload = 5;
  Cycle(s, config);
  EXPECT_NE(Where(s, whole), "pending");
}

TEST(ReclaimTest, QueueBelowFairShareTakesBack) {
  ClusterState s;
  s.AddNode(Node("n0", 4));
  const QueueId a = s.AddQueue(Queue("a", 2));
  const QueueId b = s.AddQueue(Queue("b", 2));
  std::vector<WorkloadId> a_jobs;
  for (int i = 0; i < 4; ++i) a_jobs.push_back(s.AddWorkload(Whole("a" + std::to_string(i), a, 1)));
  Cycle(s);  // a borrows b's idle quota
  EXPECT_DOUBLE_EQ(s.queue(a).allocated[Resource::kGpu], 4);
  const WorkloadId b0 = s.AddWorkload(Whole("b0", b, 1));
  const WorkloadId b1 = s.AddWorkload(Whole("b1", b, 1));
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, b0), "pending");
  EXPECT_NE(Where(s, b1), "pending");
  EXPECT_EQ(Count(r, DecisionKind::kEvict, Action::kReclaim), 2);
  EXPECT_DOUBLE_EQ(s.queue(a).allocated[Resource::kGpu], 2);
  // The newest of a's jobs went first.
  EXPECT_EQ(Where(s, a_jobs[3]), "pending");
  EXPECT_EQ(Where(s, a_jobs[2]), "pending");
}

TEST(ReclaimTest, NoReclaimAboveFairShare) {
  ClusterState s;
  s.AddNode(Node("n0", 4));
  const QueueId a = s.AddQueue(Queue("a", 2));
  const QueueId b = s.AddQueue(Queue("b", 2));
  for (int i = 0; i < 2; ++i) s.AddWorkload(Whole("a" + std::to_string(i), a, 1));
  for (int i = 0; i < 2; ++i) s.AddWorkload(Whole("b" + std::to_string(i), b, 1));
  Cycle(s);
  const WorkloadId extra = s.AddWorkload(Whole("b-extra", b, 1));
  const CycleResult r = Cycle(s);
  EXPECT_EQ(Where(s, extra), "pending");
  EXPECT_EQ(r.stats.evictions, 0);
}

TEST(ReclaimTest, NonPreemptibleIsNeverReclaimed) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId a = s.AddQueue(Queue("a", 2));
  const QueueId b = s.AddQueue(Queue("b", 0));
  const WorkloadId keep = s.AddWorkload(Whole("keep", a, 2, 125, false));
  Cycle(s);
  ASSERT_NE(Where(s, keep), "pending");
  s.AddWorkload(Whole("b0", b, 1));
  const CycleResult r = Cycle(s);
  EXPECT_EQ(r.stats.evictions, 0);
}

TEST(PreemptTest, InferencePreemptsBatchInSameQueue) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId q = s.AddQueue(Queue("q", 2));
  const WorkloadId b0 = s.AddWorkload(Fraction("batch0", q, 0.75, 50));
  const WorkloadId b1 = s.AddWorkload(Fraction("batch1", q, 0.75, 50));
  Cycle(s);
  const WorkloadId infer = s.AddWorkload(Fraction("infer", q, 0.5, 125, false));
  const CycleResult r = Cycle(s);
  EXPECT_NE(Where(s, infer), "pending");
  EXPECT_EQ(Count(r, DecisionKind::kEvict, Action::kPreempt), 1);
  EXPECT_EQ(Where(s, b1), "pending");  // the newer batch job goes
  EXPECT_NE(Where(s, b0), "pending");
  const Decision* d = Find(r, b1, DecisionKind::kEvict);
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d->reason.find("make room for 'infer'"), std::string::npos) << d->reason;
}

// Regression: victims on a node without GPUs made the planner read the GPU pool of a node that
// has none (found by ASan in the property test).
TEST(PreemptTest, CpuOnlyNodesAreNoPlaceForGpuWork) {
  ClusterState s;
  s.AddNode(Node("cpu", 0));
  s.AddNode(Node("gpu", 1));
  const QueueId q = s.AddQueue(Queue("q", 1));
  WorkloadSpec cpu_job = Fraction("cpu-job", q, 0, 50);
  cpu_job.gpu.kind = GpuRequestKind::kNoGpu;
  const WorkloadId cpu_id = s.AddWorkload(cpu_job);
  const WorkloadId batch = s.AddWorkload(Whole("batch", q, 1, 50));
  Cycle(s);
  ASSERT_EQ(Where(s, cpu_id), "cpu");
  const WorkloadId infer = s.AddWorkload(Fraction("infer", q, 0.5, 125));
  const CycleResult r = Cycle(s);
  EXPECT_EQ(Where(s, infer), "gpu/0");
  EXPECT_EQ(Where(s, batch), "pending");
  EXPECT_EQ(Where(s, cpu_id), "cpu");  // evicting it would not have helped
  EXPECT_EQ(r.stats.evictions, 1);
}

TEST(PreemptTest, TopologyGangEvictsWithinOneDomain) {
  ClusterState s;
  NodeSpec a = Node("a", 2);
  a.labels["rack"] = "r0";
  NodeSpec b = Node("b", 2);
  b.labels["rack"] = "r1";
  s.AddNode(a);
  s.AddNode(b);
  const QueueId q = s.AddQueue(Queue("q", 4));
  // r1 holds the cheapest victim, but also inference that cannot be evicted; only r0 can be
  // cleared for both members.
  const WorkloadId infer = s.AddWorkload(Whole("infer", q, 1, 125, false));
  const WorkloadId old0 = s.AddWorkload(Whole("old0", q, 1, 50));
  const WorkloadId old1 = s.AddWorkload(Whole("old1", q, 1, 50));
  const WorkloadId newest = s.AddWorkload(Whole("newest", q, 1, 50));
  s.Bind(infer, Placement{1, {{2, kMilliPerGpu, s.gpu(2).memory}}});
  s.Bind(newest, Placement{1, {{3, kMilliPerGpu, s.gpu(3).memory}}});
  s.Bind(old0, Placement{0, {{0, kMilliPerGpu, s.gpu(0).memory}}});
  s.Bind(old1, Placement{0, {{1, kMilliPerGpu, s.gpu(1).memory}}});
  s.Commit();
  const GangId g = s.AddGang("g", 2, "rack");
  std::vector<WorkloadId> members;
  for (int i = 0; i < 2; ++i) {
    WorkloadSpec m = Whole("m" + std::to_string(i), q, 1, 100);
    m.gang = g;
    members.push_back(s.AddWorkload(m));
  }
  const CycleResult r = Cycle(s);
  for (WorkloadId m : members) EXPECT_EQ(Where(s, m).substr(0, 1), "a");
  EXPECT_EQ(Where(s, old0), "pending");
  EXPECT_EQ(Where(s, old1), "pending");
  EXPECT_EQ(Where(s, newest), "b/1");
  EXPECT_EQ(Where(s, infer), "b/0");
  EXPECT_EQ(r.stats.evictions, 2);
}

TEST(PreemptTest, EqualPriorityDoesNotPreempt) {
  ClusterState s;
  s.AddNode(Node("n0", 1));
  const QueueId q = s.AddQueue(Queue("q", 1));
  s.AddWorkload(Whole("first", q, 1, 50));
  Cycle(s);
  const WorkloadId second = s.AddWorkload(Whole("second", q, 1, 50));
  const CycleResult r = Cycle(s);
  EXPECT_EQ(Where(s, second), "pending");
  EXPECT_EQ(r.stats.evictions, 0);
}

TEST(PreemptTest, GangVictimsGoTogether) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId q = s.AddQueue(Queue("q", 2));
  const GangId g = s.AddGang("g", 2);
  std::vector<WorkloadId> members;
  for (int i = 0; i < 2; ++i) {
    WorkloadSpec m = Whole("g" + std::to_string(i), q, 1, 50);
    m.gang = g;
    members.push_back(s.AddWorkload(m));
  }
  Cycle(s);
  const WorkloadId infer = s.AddWorkload(Whole("infer", q, 1, 125));
  const CycleResult r = Cycle(s);  // invariants include "gangs all-or-nothing"
  EXPECT_NE(Where(s, infer), "pending");
  EXPECT_EQ(Where(s, members[0]), "pending");
  EXPECT_EQ(Where(s, members[1]), "pending");
  EXPECT_EQ(r.stats.evictions, 2);
}

TEST(CycleTest, DecisionsCarryReasonsAndStats) {
  ClusterState s;
  s.AddNode(Node("n0", 1));
  const QueueId q = s.AddQueue(Queue("q", 1));
  s.AddWorkload(Fraction("a", q, 0.5));
  s.AddWorkload(Whole("b", q, 2));
  const CycleResult r = Cycle(s);
  EXPECT_EQ(r.stats.binds, 1);
  EXPECT_EQ(r.stats.unschedulable, 1);
  for (const Decision& d : r.decisions) EXPECT_FALSE(d.reason.empty());
  EXPECT_GE(r.stats.total_seconds, 0);
}

}  // namespace
}  // namespace gpufrac::sched
