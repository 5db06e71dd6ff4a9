#include "sched/placement.h"

#include <gtest/gtest.h>

#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

using testing::Fraction;
using testing::kGiB;
using testing::Node;
using testing::Queue;
using testing::Where;
using testing::Whole;

class PlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    s_.AddNode(Node("n0", 4));
    s_.AddNode(Node("n1", 4));
    q_ = s_.AddQueue(Queue("q", 8));
  }

  // Adds and binds a workload where placement puts it; returns where that was.
  std::string Add(WorkloadSpec spec) {
    const WorkloadId id = s_.AddWorkload(std::move(spec));
    std::string reason;
    std::optional<Placement> p = FindPlacement(s_, id, {}, &reason);
    if (!p) return "fail: " + reason;
    s_.Bind(id, *p);
    s_.Commit();
    return Where(s_, id);
  }

  ClusterState s_;
  QueueId q_ = kNone;
};

TEST_F(PlacementTest, BinpackFillsPartlyUsedGpusFirst) {
  EXPECT_EQ(Add(Fraction("a", q_, 0.5)), "n0/0");
  EXPECT_EQ(Add(Fraction("b", q_, 0.25)), "n0/0");
  EXPECT_EQ(Add(Fraction("c", q_, 0.5)), "n0/1");   // 0.25 left on GPU 0 is too small
  EXPECT_EQ(Add(Fraction("d", q_, 0.25)), "n0/0");  // best fit: the GPU with 0.25 left
  EXPECT_EQ(s_.node(0).free_whole_gpus, 2);
  EXPECT_EQ(s_.node(1).free_whole_gpus, 4);  // the other node stays whole
}

TEST_F(PlacementTest, WholeGpusGoToTheFullestNodeThatFits) {
  EXPECT_EQ(Add(Whole("a", q_, 1)), "n0/0");
  EXPECT_EQ(Add(Whole("b", q_, 3)), "n0/1/2/3");  // n0 has exactly 3 left
  EXPECT_EQ(Add(Whole("c", q_, 2)), "n1/0/1");
  EXPECT_EQ(Add(Whole("d", q_, 3)),
            "fail: no node has room for 3 whole GPU(s): the most whole "
            "free GPUs on a node is 2 (node 'n1')");
}

TEST_F(PlacementTest, SpreadPrefersEmptyGpusAndNodes) {
  WorkloadSpec a = Fraction("a", q_, 0.25);
  a.strategy = PlacementStrategy::kSpread;
  const std::string first = Add(a);
  a.name = "b";
  const std::string second = Add(a);
  // The second goes to the node that still has all its GPUs whole, on an empty GPU.
  EXPECT_EQ(first.substr(2), "/0");
  EXPECT_EQ(second.substr(2), "/0");
  EXPECT_NE(first.substr(0, 2), second.substr(0, 2));
}

TEST_F(PlacementTest, SelectorsAndTypesAreHonoured) {
  ClusterState s;
  NodeSpec a100 = Node("a", 2, 40 * kGiB, "A100");
  a100.labels["rack"] = "r1";
  s.AddNode(Node("h", 2));
  s.AddNode(a100);
  const QueueId q = s.AddQueue(Queue("q", 4));
  WorkloadSpec w = Fraction("w", q, 0.5);
  w.node_selector["rack"] = "r1";
  const WorkloadId id = s.AddWorkload(w);
  std::string reason;
  std::optional<Placement> p = FindPlacement(s, id, {}, &reason);
  ASSERT_TRUE(p.has_value()) << reason;
  EXPECT_EQ(s.node(p->node).spec.name, "a");
  EXPECT_EQ(p->slices[0].memory, 20 * kGiB);  // half of a 40 GiB card
  WorkloadSpec v = Fraction("v", q, 0.5);
  v.gpu_type = "B200";
  const WorkloadId vid = s.AddWorkload(v);
  EXPECT_FALSE(FindPlacement(s, vid, {}, &reason).has_value());
  EXPECT_NE(reason.find("no GPU of that type"), std::string::npos) << reason;
}

TEST_F(PlacementTest, ReasonNamesWhatIsShort) {
  WorkloadSpec hungry = Fraction("cpu-hungry", q_, 0.25);
  hungry.cpu_milli = 100000;  // more than any node has
  EXPECT_EQ(Add(Fraction("a", q_, 0.5)), "n0/0");
  const std::string got = Add(hungry);
  EXPECT_NE(got.find("short of CPU"), std::string::npos) << got;
}

TEST_F(PlacementTest, MemoryRequestsUseFreeMemory) {
  WorkloadSpec w = Fraction("m", q_, 0);
  w.gpu.kind = GpuRequestKind::kMemory;
  w.gpu.memory_bytes = 60 * kGiB;
  EXPECT_EQ(Add(w), "n0/0");
  w.name = "m2";
  EXPECT_EQ(Add(w), "n0/1");  // 20 GiB left on GPU 0
  w.name = "m3";
  w.gpu.memory_bytes = 20 * kGiB;
  EXPECT_EQ(Add(w), "n0/0");  // best fit into the 20 GiB hole
  EXPECT_EQ(s_.gpu(0).free_memory, 0u);
}

TEST_F(PlacementTest, MemoryAskLargerThanAnyGpuSaysSo) {
  WorkloadSpec w = Fraction("huge", q_, 0);
  w.gpu.kind = GpuRequestKind::kMemory;
  w.gpu.memory_bytes = 100 * kGiB;  // the cards have 80 GiB, all of it free
  const std::string got = Add(w);
  EXPECT_NE(got.find("no GPU has that much memory (the largest has 80.0GiB)"), std::string::npos)
      << got;
}

}  // namespace
}  // namespace gpufrac::sched
