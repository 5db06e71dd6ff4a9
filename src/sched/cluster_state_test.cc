#include "sched/cluster_state.h"

#include <gtest/gtest.h>

#include "sched/invariants.h"
#include "sched/placement.h"
#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

using testing::Fraction;
using testing::kGiB;
using testing::Node;
using testing::Queue;
using testing::Where;
using testing::Whole;

Placement Place(const ClusterState& s, WorkloadId id) {
  std::string reason;
  std::optional<Placement> p = FindPlacement(s, id, {}, &reason);
  EXPECT_TRUE(p.has_value()) << reason;
  return p.value_or(Placement{});
}

TEST(ClusterStateTest, BindChargesGpuNodeAndQueue) {
  ClusterState s;
  s.AddNode(Node("n0", 2));
  const QueueId q = s.AddQueue(Queue("q", 1));
  const WorkloadId w = s.AddWorkload(Fraction("w", q, 0.25));
  EXPECT_EQ(s.pending_total(), 1u);
  s.Bind(w, Place(s, w));
  EXPECT_EQ(s.pending_total(), 0u);
  EXPECT_EQ(s.bound_total(), 1u);
  EXPECT_EQ(s.gpu(0).free_milli, 750);
  EXPECT_EQ(s.gpu(0).free_memory, 60 * kGiB);
  EXPECT_EQ(s.node(0).free_whole_gpus, 1);
  EXPECT_DOUBLE_EQ(s.queue(q).allocated[Resource::kGpu], 0.25);
  EXPECT_EQ(s.pools()[0].partial_gpus.size(), 1u);
  EXPECT_TRUE(CheckInvariants(s).ok());
}

TEST(ClusterStateTest, RollbackRestoresEverything) {
  ClusterState s;
  s.AddNode(Node("n0", 4));
  s.AddNode(Node("n1", 4));
  const QueueId q = s.AddQueue(Queue("q", 1));
  const WorkloadId a = s.AddWorkload(Whole("a", q, 2));
  const WorkloadId b = s.AddWorkload(Fraction("b", q, 0.5));
  s.Bind(a, Place(s, a));
  s.Commit();
  const std::string a_where = Where(s, a);
  const size_t mark = s.Checkpoint();
  s.Bind(b, Place(s, b));
  s.Unbind(a);
  EXPECT_EQ(Where(s, a), "pending");
  s.Rollback(mark);
  EXPECT_EQ(Where(s, a), a_where);
  EXPECT_EQ(Where(s, b), "pending");
  EXPECT_EQ(s.pending_total(), 1u);
  EXPECT_DOUBLE_EQ(s.queue(q).allocated[Resource::kGpu], 2);
  EXPECT_TRUE(s.pools()[0].partial_gpus.empty());
  EXPECT_TRUE(CheckInvariants(s).ok());
}

TEST(ClusterStateTest, RemoveFreesAndForgets) {
  ClusterState s;
  s.AddNode(Node("n0", 1));
  const QueueId q = s.AddQueue(Queue("q", 1));
  const WorkloadId a = s.AddWorkload(Whole("a", q, 1));
  s.Bind(a, Place(s, a));
  s.Commit();
  s.RemoveWorkload(a);
  EXPECT_EQ(s.FindWorkload("a"), kNone);
  EXPECT_EQ(s.node(0).free_whole_gpus, 1);
  EXPECT_DOUBLE_EQ(s.queue(q).allocated[Resource::kGpu], 0);
  EXPECT_TRUE(CheckInvariants(s).ok());
}

TEST(ClusterStateTest, MemoryRequestTakesProportionalCompute) {
  ClusterState s;
  s.AddNode(Node("n0", 1, 80 * kGiB));
  s.AddQueue(Queue("q", 1));
  GpuRequest r;
  r.kind = GpuRequestKind::kMemory;
  r.memory_bytes = 20 * kGiB;
  int64_t milli = 0;
  uint64_t memory = 0;
  ASSERT_TRUE(s.FractionNeed(r, 0, &milli, &memory));
  EXPECT_EQ(milli, 250);
  EXPECT_EQ(memory, 20 * kGiB);
  r.memory_bytes = 81 * kGiB;
  EXPECT_FALSE(s.FractionNeed(r, 0, &milli, &memory));
}

TEST(InvariantsTest, DetectsBrokenGang) {
  ClusterState s;
  s.AddNode(Node("n0", 4));
  const QueueId q = s.AddQueue(Queue("q", 4));
  const GangId g = s.AddGang("g", 2);
  WorkloadSpec m = Whole("m0", q, 1);
  m.gang = g;
  const WorkloadId m0 = s.AddWorkload(m);
  m.name = "m1";
  s.AddWorkload(m);
  s.Bind(m0, Place(s, m0));  // only one of the two required members
  const Status st = CheckInvariants(s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("gang 'g'"), std::string::npos) << st.message();
}

TEST(InvariantsTest, DetectsGangAcrossDomains) {
  ClusterState s;
  NodeSpec a = Node("a", 1);
  a.labels["rack"] = "r0";
  NodeSpec b = Node("b", 1);
  b.labels["rack"] = "r1";
  s.AddNode(a);
  s.AddNode(b);
  const QueueId q = s.AddQueue(Queue("q", 2));
  const GangId g = s.AddGang("g", 2, "rack");
  WorkloadSpec m = Whole("m0", q, 1);
  m.gang = g;
  const WorkloadId m0 = s.AddWorkload(m);
  m.name = "m1";
  const WorkloadId m1 = s.AddWorkload(m);
  s.Bind(m0, Placement{0, {{0, kMilliPerGpu, s.gpu(0).memory}}});
  s.Bind(m1, Placement{1, {{1, kMilliPerGpu, s.gpu(1).memory}}});
  const Status st = CheckInvariants(s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("spans several 'rack' domains"), std::string::npos) << st.message();
}

TEST(InvariantsTest, DetectsQuotaLimitExceeded) {
  ClusterState s;
  s.AddNode(Node("n0", 4));
  QueueSpec spec = Queue("q", 1);
  spec.limit[Resource::kGpu] = 1;
  const QueueId q = s.AddQueue(spec);
  const WorkloadId w = s.AddWorkload(Whole("w", q, 2));
  s.Bind(w, Place(s, w));  // bypasses the scheduler's quota check on purpose
  const Status st = CheckInvariants(s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("limit"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace gpufrac::sched
