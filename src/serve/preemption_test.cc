// The preemption plan: batch tenants only, the GPU that needs the fewest, youngest first.
#include "serve/preemption.h"

#include <gtest/gtest.h>

namespace gpufrac::serve {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

TenantInfo T(const std::string& id, int gpu, bool batch, int64_t created, uint64_t gib) {
  TenantInfo t;
  t.id = id;
  t.gpu = gpu;
  t.batch = batch;
  t.state = "running";
  t.created_ms = created;
  t.committed = gib * kGiB;
  return t;
}

GpuShare Memory(const std::string& memory, const std::string& gpu = "") {
  GpuShare s;
  s.memory = memory;
  s.gpu = gpu;
  return s;
}

TEST(ServePreemptionTest, PicksTheGpuNeedingTheFewestVictimsYoungestFirst) {
  const std::vector<GpuRoom> gpus = {{0, "", 80 * kGiB, 0}, {1, "", 80 * kGiB, 10 * kGiB}};
  const std::vector<TenantInfo> tenants = {
      T("inf0", 0, false, 1, 60), T("b0-old", 0, true, 2, 10), T("b0-young", 0, true, 9, 10),
      T("b1", 1, true, 3, 30),    T("inf1", 1, false, 4, 40),
  };
  // 40 GiB: GPU 0 can free only 20 (inference is never touched); GPU 1 frees 30 + 10 free.
  EXPECT_EQ(PlanPreemption(Memory("40GiB"), gpus, tenants), std::vector<std::string>{"b1"});
  // 15 GiB: GPU 0 needs both its batch tenants, GPU 1 one; fewest wins.
  EXPECT_EQ(PlanPreemption(Memory("15GiB"), gpus, tenants), std::vector<std::string>{"b1"});
  // Pinned to GPU 0: youngest first, only as many as needed.
  EXPECT_EQ(PlanPreemption(Memory("10GiB", "0"), gpus, tenants),
            std::vector<std::string>{"b0-young"});
  EXPECT_EQ(PlanPreemption(Memory("20GiB", "0"), gpus, tenants),
            (std::vector<std::string>{"b0-young", "b0-old"}));
  // A fraction resolves against each card.
  EXPECT_EQ(PlanPreemption(Memory("0.5"), gpus, tenants), std::vector<std::string>{"b1"});
}

TEST(ServePreemptionTest, NoPlanWhenMemoryCannotMakeRoomOrIsNotTheProblem) {
  const std::vector<GpuRoom> gpus = {{0, "", 80 * kGiB, 0}};
  const std::vector<TenantInfo> tenants = {T("inf", 0, false, 1, 70), T("b", 0, true, 2, 10)};
  EXPECT_TRUE(PlanPreemption(Memory("20GiB"), gpus, tenants).empty());  // 10 GiB is all it frees
  // Memory fits already (the refusal was about compute): nothing to plan by memory.
  const std::vector<GpuRoom> roomy = {{0, "", 80 * kGiB, 30 * kGiB}};
  EXPECT_TRUE(PlanPreemption(Memory("20GiB"), roomy, tenants).empty());
  // Exited tenants and inference tenants are never victims.
  std::vector<TenantInfo> exited = {T("b", 0, true, 2, 80)};
  exited[0].state = "exited";
  EXPECT_TRUE(PlanPreemption(Memory("20GiB"), gpus, exited).empty());
}

TEST(ServePreemptionTest, APinnedReplicaOnlyEverPreemptsOnItsOwnGpu) {
  const std::vector<GpuRoom> gpus = {{0, "GPU-aaaa1111-0000", 80 * kGiB, 0},
                                     {1, "GPU-bbbb2222-0000", 80 * kGiB, 0}};
  const std::vector<TenantInfo> tenants = {
      T("b0-old", 0, true, 1, 10),
      T("b0-young", 0, true, 5, 10),
      T("b1-young", 1, true, 9, 70),
      T("inf1", 1, false, 2, 10),
  };
  // Pinned to GPU 0 by UUID prefix: the plan looks at GPU 0 only, though GPU 1 frees more.
  EXPECT_EQ(PlanPreemption(Memory("70GiB", "GPU-aaaa"), gpus, tenants), std::vector<std::string>{});
  EXPECT_EQ(PlanPreemption(Memory("10GiB", "GPU-aaaa"), gpus, tenants),
            std::vector<std::string>{"b0-young"});
  // The fallback too: only GPU 0's batch tenants, youngest first, never GPU 1's.
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "GPU-aaaa"), gpus, tenants, {}),
            (std::vector<std::string>{"b0-young", "b0-old"}));
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "0"), gpus, tenants, {"b0-young"}),
            std::vector<std::string>{"b0-old"});
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "1"), gpus, tenants, {}),
            std::vector<std::string>{"b1-young"});
  // Unpinned: every GPU's batch tenants, youngest first; inference never.
  EXPECT_EQ(FallbackVictims(Memory("10GiB"), gpus, tenants, {}),
            (std::vector<std::string>{"b1-young", "b0-young", "b0-old"}));
  // Unpinned, a batch tenant the listing puts on no known GPU may go too; pinned, it may not.
  std::vector<TenantInfo> with_unknown = tenants;
  with_unknown.push_back(T("b-unknown", -1, true, 3, 10));
  EXPECT_EQ(FallbackVictims(Memory("10GiB"), gpus, with_unknown, {}),
            (std::vector<std::string>{"b1-young", "b0-young", "b-unknown", "b0-old"}));
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "0"), gpus, with_unknown, {}),
            (std::vector<std::string>{"b0-young", "b0-old"}));
}

}  // namespace
}  // namespace gpufrac::serve
