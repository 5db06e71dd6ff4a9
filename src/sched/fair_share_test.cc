#include "sched/fair_share.h"

#include <gtest/gtest.h>

#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

using testing::Fraction;
using testing::kGiB;
using testing::Node;
using testing::Queue;
using testing::Whole;

TEST(DivideShareTest, QuotaFirstThenByWeight) {
  // 10 to divide: quotas 2 and 3, then the remaining 5 split 1:4.
  const std::vector<double> got = DivideShare(10, {{2, 1, 100}, {3, 4, 100}});
  EXPECT_DOUBLE_EQ(got[0], 2 + 1);
  EXPECT_DOUBLE_EQ(got[1], 3 + 4);
}

TEST(DivideShareTest, NobodyGetsMoreThanItAsks) {
  // The first asks for 1 only: its unused weight share goes to the second (water-filling).
  const std::vector<double> got = DivideShare(10, {{0, 1, 1}, {0, 1, 100}});
  EXPECT_DOUBLE_EQ(got[0], 1);
  EXPECT_DOUBLE_EQ(got[1], 9);
}

TEST(DivideShareTest, QuotaCappedByDemand) {
  const std::vector<double> got = DivideShare(10, {{8, 1, 2}, {0, 1, 100}});
  EXPECT_DOUBLE_EQ(got[0], 2);
  EXPECT_DOUBLE_EQ(got[1], 8);
}

TEST(DivideShareTest, OversubscribedQuotasScaleTogether) {
  const std::vector<double> got = DivideShare(6, {{4, 1, 10}, {8, 1, 10}});
  EXPECT_DOUBLE_EQ(got[0], 2);
  EXPECT_DOUBLE_EQ(got[1], 4);
}

TEST(DivideShareTest, ZeroWeightGetsOnlyQuota) {
  const std::vector<double> got = DivideShare(10, {{1, 0, 10}, {1, 1, 10}});
  EXPECT_DOUBLE_EQ(got[0], 1);
  EXPECT_DOUBLE_EQ(got[1], 9);
}

TEST(DivideShareTest, LeftoverStaysUnassignedWithoutDemand) {
  const std::vector<double> got = DivideShare(10, {{1, 1, 2}, {1, 1, 3}});
  EXPECT_DOUBLE_EQ(got[0], 2);
  EXPECT_DOUBLE_EQ(got[1], 3);
}

TEST(FairShareTest, HierarchyIsDividedTopDown) {
  ClusterState s;
  s.AddNode(Node("n0", 8));
  s.AddNode(Node("n1", 8));
  const QueueId org_a = s.AddQueue(Queue("org-a", 4, 1));
  const QueueId org_b = s.AddQueue(Queue("org-b", 4, 3));
  const QueueId a1 = s.AddQueue(Queue("a1", 2, 1, org_a));
  const QueueId a2 = s.AddQueue(Queue("a2", 0, 1, org_a));
  const QueueId b1 = s.AddQueue(Queue("b1", 0, 1, org_b));
  // Everyone wants far more than the 16 GPUs.
  for (QueueId q : {a1, a2, b1}) s.AddWorkload(Whole("big-" + std::to_string(q), q, 64));
  const FairShare fs = ComputeFairShare(s);
  // Root: quotas 4 + 4, then 8 left split 1:3 -> org-a 6, org-b 10.
  EXPECT_DOUBLE_EQ(fs.share[org_a][Resource::kGpu], 6);
  EXPECT_DOUBLE_EQ(fs.share[org_b][Resource::kGpu], 10);
  // org-a's 6: a1 quota 2, then 4 split 1:1.
  EXPECT_DOUBLE_EQ(fs.share[a1][Resource::kGpu], 4);
  EXPECT_DOUBLE_EQ(fs.share[a2][Resource::kGpu], 2);
  EXPECT_DOUBLE_EQ(fs.share[b1][Resource::kGpu], 10);
}

TEST(FairShareTest, DemandCountsFractionsAndLimits) {
  ClusterState s;
  s.AddNode(Node("n0", 8));
  QueueSpec limited = Queue("limited", 0, 1);
  limited.limit[Resource::kGpu] = 1;
  const QueueId a = s.AddQueue(limited);
  const QueueId b = s.AddQueue(Queue("b", 0, 1));
  for (int i = 0; i < 8; ++i) s.AddWorkload(Fraction("a" + std::to_string(i), a, 0.5));
  s.AddWorkload(Fraction("b0", b, 0.25));
  const FairShare fs = ComputeFairShare(s);
  EXPECT_DOUBLE_EQ(fs.demand[a][Resource::kGpu], 1);  // 4 asked, limit 1
  EXPECT_DOUBLE_EQ(fs.share[a][Resource::kGpu], 1);
  EXPECT_DOUBLE_EQ(fs.share[b][Resource::kGpu], 0.25);
}

TEST(SaturationRatioTest, DominantResourceDecides) {
  ResourceVec alloc;
  ResourceVec share;
  alloc[Resource::kGpu] = 1;
  share[Resource::kGpu] = 4;
  alloc[Resource::kCpu] = 3;
  share[Resource::kCpu] = 4;
  EXPECT_DOUBLE_EQ(SaturationRatio(alloc, share), 0.75);
  share[Resource::kCpu] = 0;
  EXPECT_TRUE(SaturationRatio(alloc, share) > 1e9);
  EXPECT_DOUBLE_EQ(SaturationRatio(ResourceVec{}, share), 0);
}

TEST(SaturationRatioTest, ResourcesOutsideTheMaskDoNotCount) {
  ResourceVec alloc;
  ResourceVec share;
  alloc[Resource::kGpu] = 2;
  share[Resource::kGpu] = 2;
  alloc[Resource::kCpu] = 8;  // no CPU share at all
  const ResourceMask gpu_only = {true, false, false};
  EXPECT_DOUBLE_EQ(SaturationRatio(alloc, share, gpu_only), 1);
  // Holding only what it has no share of leaves nothing to fall back to.
  alloc[Resource::kGpu] = 0;
  EXPECT_TRUE(SaturationRatio(alloc, share, gpu_only) > 1e9);
}

TEST(FairShareTest, WeightZeroQueueIsJudgedOnlyByWhatItHasAQuotaFor) {
  ClusterState s;
  s.AddNode(Node("n0", 4));
  // Quota of 2 GPUs and no CPU quota: with weight 0 it can never get a CPU share.
  const QueueId guaranteed = s.AddQueue(Queue("guaranteed", 2, 0));
  const QueueId burst = s.AddQueue(Queue("burst", 0, 1));
  const WorkloadId own = s.AddWorkload(Whole("own", guaranteed, 2));
  s.AddWorkload(Whole("borrow", burst, 2));
  s.Bind(own, {0, {{0, kMilliPerGpu, 80 * kGiB}, {1, kMilliPerGpu, 80 * kGiB}}});
  s.Commit();
  const FairShare fs = ComputeFairShare(s);
  EXPECT_TRUE(fs.entitled[guaranteed][static_cast<int>(Resource::kGpu)]);
  EXPECT_FALSE(fs.entitled[guaranteed][static_cast<int>(Resource::kCpu)]);
  EXPECT_TRUE(fs.entitled[burst][static_cast<int>(Resource::kCpu)]);
  // Within its quota, though it uses CPU it has no share of.
  EXPECT_DOUBLE_EQ(QueueSaturation(fs, guaranteed, s.queue(guaranteed).allocated), 1);
}

}  // namespace
}  // namespace gpufrac::sched
