#include "node/placement.h"

#include <gtest/gtest.h>

namespace gpufrac::node {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

PlacementRequest Ask(uint64_t bytes, Placement policy = Placement::kBinPack) {
  PlacementRequest r;
  r.request = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = bytes};
  r.policy = policy;
  return r;
}

TEST(PlacementTest, BinPackFillsPartlyUsedGpusFirst) {
  // GPU 1 is partly used: bin-pack puts the new fraction there and keeps GPUs 0 and 2 whole.
  std::vector<GpuLoad> gpus = {
      {0, 80 * kGiB, 0, ""}, {1, 80 * kGiB, 40 * kGiB, ""}, {2, 80 * kGiB, 0, ""}};
  EXPECT_EQ(Place(Ask(20 * kGiB), gpus).candidates, (std::vector<int>{1, 0, 2}));
  // When it no longer fits on GPU 1, the fullest GPU where it fits comes first.
  EXPECT_EQ(Place(Ask(50 * kGiB), gpus).candidates, (std::vector<int>{0, 2}));
}

TEST(PlacementTest, SpreadPicksTheEmptiestGpu) {
  std::vector<GpuLoad> gpus = {
      {0, 80 * kGiB, 30 * kGiB, ""}, {1, 80 * kGiB, 10 * kGiB, ""}, {2, 80 * kGiB, 20 * kGiB, ""}};
  EXPECT_EQ(Place(Ask(10 * kGiB, Placement::kSpread), gpus).candidates,
            (std::vector<int>{1, 2, 0}));
}

TEST(PlacementTest, FractionsResolvePerCard) {
  std::vector<GpuLoad> gpus = {{0, 40 * kGiB, 20 * kGiB, ""}, {1, 80 * kGiB, 20 * kGiB, ""}};
  PlacementRequest r;
  r.request = MemoryAmount{.is_fraction = true, .fraction = 0.5, .bytes = 0};
  // Half of GPU 0 is 20 GiB (fits exactly, nothing left); half of GPU 1 is 40 GiB.
  EXPECT_EQ(Place(r, gpus).candidates, (std::vector<int>{0, 1}));
  EXPECT_EQ(RequestBytes(r, 80 * kGiB), 40 * kGiB);
  EXPECT_EQ(LimitBytes(r, 80 * kGiB), 40 * kGiB);  // no limit: the request
}

TEST(PlacementTest, ExplicitGpuIsTheOnlyCandidate) {
  std::vector<GpuLoad> gpus = {{0, 80 * kGiB, 0, ""}, {1, 80 * kGiB, 70 * kGiB, ""}};
  PlacementRequest r = Ask(5 * kGiB);
  r.gpu = 1;
  EXPECT_EQ(Place(r, gpus).candidates, (std::vector<int>{1}));
  r.request.bytes = 20 * kGiB;
  PlacementResult refused = Place(r, gpus);
  EXPECT_TRUE(refused.candidates.empty());
  EXPECT_EQ(refused.refusal, "GPU 1: asked 20.0GiB, free 10.0GiB of 80.0GiB");
}

TEST(PlacementTest, RefusalNamesEveryGpuAndNeverOverCommits) {
  std::vector<GpuLoad> gpus = {{0, 80 * kGiB, 61 * kGiB, ""}, {1, 80 * kGiB, 80 * kGiB, ""}};
  PlacementResult r = Place(Ask(20 * kGiB), gpus);
  EXPECT_TRUE(r.candidates.empty());
  EXPECT_EQ(r.refusal,
            "GPU 0: asked 20.0GiB, free 19.0GiB of 80.0GiB; GPU 1: asked 20.0GiB, free 0B of "
            "80.0GiB");
  // Exactly the free memory fits.
  EXPECT_EQ(Place(Ask(19 * kGiB), gpus).candidates, (std::vector<int>{0}));
}

TEST(PlacementTest, RefusesALimitLargerThanTheCard) {
  PlacementRequest r = Ask(10 * kGiB);
  r.limit = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = 100 * kGiB};
  PlacementResult p = Place(r, {{0, 80 * kGiB, 0, ""}});
  EXPECT_TRUE(p.candidates.empty());
  EXPECT_EQ(p.refusal, "GPU 0: limit 100.0GiB exceeds the card's 80.0GiB");
}

TEST(PlacementTest, NoGpus) {
  EXPECT_EQ(Place(Ask(1), {}).refusal, "this host has no GPU");
  PlacementRequest r = Ask(1);
  r.gpu = 3;
  EXPECT_EQ(Place(r, {{0, kGiB, 0, ""}}).refusal, "GPU 3 does not exist");
}

TEST(PlacementTest, AnUnhealthyGpuGetsNothingAndSaysWhy) {
  const std::vector<GpuLoad> gpus = {{0, 80 * kGiB, 0, "2 uncorrected ECC errors"},
                                     {1, 80 * kGiB, 70 * kGiB, ""}};
  // Spread would pick the empty GPU 0; it is unhealthy, so only GPU 1 is a candidate.
  EXPECT_EQ(Place(Ask(5 * kGiB, Placement::kSpread), gpus).candidates, (std::vector<int>{1}));
  const PlacementResult r = Place(Ask(20 * kGiB), gpus);
  EXPECT_TRUE(r.candidates.empty());
  EXPECT_EQ(r.refusal,
            "GPU 0: unhealthy (2 uncorrected ECC errors); GPU 1: asked 20.0GiB, free 10.0GiB of "
            "80.0GiB");
}

TEST(PlacementTest, ALimitBelowTheRequestOnOneCardOnlyRulesOutThatCard) {
  // 80 + 40 GiB: half is 40 GiB on GPU 0, above the 30 GiB limit, and 20 GiB on GPU 1.
  PlacementRequest r;
  r.request = MemoryAmount{.is_fraction = true, .fraction = 0.5, .bytes = 0};
  r.limit = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = 30 * kGiB};
  EXPECT_EQ(RequestProblem(r, 80 * kGiB), "memory_limit: 30.0GiB is below the request 40.0GiB");
  EXPECT_EQ(RequestProblem(r, 40 * kGiB), "");
  const std::vector<GpuLoad> gpus = {{0, 80 * kGiB, 0, ""}, {1, 40 * kGiB, 30 * kGiB, ""}};
  PlacementResult p = Place(r, gpus);
  EXPECT_TRUE(p.candidates.empty());
  EXPECT_EQ(p.refusal,
            "GPU 0: memory_limit: 30.0GiB is below the request 40.0GiB; GPU 1: asked 20.0GiB, free "
            "10.0GiB of 40.0GiB");
  // Only GPU 1 lacks nothing but memory: a burst reclaim may only look there.
  EXPECT_EQ(p.short_of_memory, (std::vector<int>{1}));
}

TEST(PlacementTest, ComputeGuaranteesNeverOverCommitAndAreNotAMemoryShortage) {
  PlacementRequest r = Ask(10 * kGiB);
  r.compute_request = 0.5;
  GpuLoad gpu = {0, 80 * kGiB, 60 * kGiB, "", 0.7};
  PlacementResult p = Place(r, {gpu});
  EXPECT_EQ(p.refusal, "GPU 0: compute asked 0.500, 0.300 of the GPU not yet guaranteed");
  EXPECT_TRUE(p.short_of_memory.empty());
  // Short of both: memory is named first, and reclaiming memory would not be enough.
  gpu.committed_bytes = 75 * kGiB;
  p = Place(r, {gpu});
  EXPECT_EQ(p.refusal, "GPU 0: asked 10.0GiB, free 5.0GiB of 80.0GiB");
  EXPECT_TRUE(p.short_of_memory.empty());
  gpu.compute_promised = 0.5;
  p = Place(r, {gpu});
  EXPECT_EQ(p.refusal, "GPU 0: asked 10.0GiB, free 5.0GiB of 80.0GiB");
  EXPECT_EQ(p.short_of_memory, (std::vector<int>{0}));
  // The default compute request is the memory share: 40 of 80 GiB is 0.5.
  PlacementRequest half = Ask(40 * kGiB);
  EXPECT_DOUBLE_EQ(ComputeRequest(half, 80 * kGiB), 0.5);
  half.compute_limit = 0.25;
  EXPECT_EQ(RequestProblem(half, 80 * kGiB),
            "compute_limit: 0.250 is below the compute request 0.500");
  half.compute_strict = true;  // strict: the limit is the request
  EXPECT_EQ(RequestProblem(half, 80 * kGiB), "");
}

}  // namespace
}  // namespace gpufrac::node
