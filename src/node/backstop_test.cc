#include "node/backstop.h"

#include <gtest/gtest.h>

namespace gpufrac::node {
namespace {

constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kMiB = 1ull << 20;

ObservedProcess Proc(pid_t pid, uint64_t used, const std::string& tenant, uint64_t limit) {
  ObservedProcess p;
  p.pid = pid;
  p.start_time = 100 + static_cast<uint64_t>(pid);
  p.used = used;
  p.tenant = tenant;
  p.tenant_limit = limit;
  return p;
}

TEST(Backstop, ProcessesWithinTheirTenantsLimitsAreNotFlagged) {
  EXPECT_TRUE(
      JudgeGpuProcesses({Proc(1, 10 * kGiB, "a", 10 * kGiB), Proc(2, 5 * kGiB, "b", 20 * kGiB),
                         Proc(3, 14 * kGiB, "b", 20 * kGiB)},
                        0)
          .empty());
}

TEST(Backstop, AProcessOfNoTenantIsFlaggedWhateverItHolds) {
  const auto f = JudgeGpuProcesses({Proc(7, 0, "", 0), Proc(8, kGiB, "a", 2 * kGiB)}, 0);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].pid, 7);
  EXPECT_EQ(f[0].start_time, 107u);
  EXPECT_EQ(f[0].reason, BackstopReason::kNoTenant);
  EXPECT_EQ(DescribeFinding(f[0], 1), "holds 0B on GPU 1 and belongs to no tenant");
}

TEST(Backstop, ATenantsProcessesTogetherAboveItsLimitAreAllFlagged) {
  // Each process is within the limit; together they are not.
  const auto f =
      JudgeGpuProcesses({Proc(1, 6 * kGiB, "a", 10 * kGiB), Proc(2, 6 * kGiB, "a", 10 * kGiB),
                         Proc(3, 30 * kGiB, "b", 40 * kGiB)},
                        0);
  ASSERT_EQ(f.size(), 2u);
  for (const BackstopFinding& x : f) {
    EXPECT_EQ(x.reason, BackstopReason::kOverLimit);
    EXPECT_EQ(x.tenant, "a");
    EXPECT_EQ(x.tenant_used, 12 * kGiB);
    EXPECT_EQ(x.allowance, 10 * kGiB);
  }
  EXPECT_NE(DescribeFinding(f[0], 0).find("interposer was bypassed"), std::string::npos);
}

TEST(Backstop, TheToleranceIsPerProcess) {
  // Two processes: 2 x 256 MiB of tolerance over a 10 GiB limit.
  const uint64_t tolerance = 256 * kMiB;
  EXPECT_TRUE(JudgeGpuProcesses({Proc(1, 5 * kGiB + 256 * kMiB, "a", 10 * kGiB),
                                 Proc(2, 5 * kGiB + 256 * kMiB, "a", 10 * kGiB)},
                                tolerance)
                  .empty());
  EXPECT_EQ(JudgeGpuProcesses({Proc(1, 5 * kGiB + 256 * kMiB + 1, "a", 10 * kGiB),
                               Proc(2, 5 * kGiB + 256 * kMiB, "a", 10 * kGiB)},
                              tolerance)
                .size(),
            2u);
}

TEST(Backstop, MemoryNvmlCannotAttributeCountsAsNothing) {
  ObservedProcess p = Proc(1, 0, "a", kGiB);
  p.used_known = false;
  EXPECT_TRUE(JudgeGpuProcesses({p}, 0).empty());
}

}  // namespace
}  // namespace gpufrac::node
