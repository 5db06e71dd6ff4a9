// Memory isolation with real processes on the simulated driver: every allocation API stops at the
// limit exactly, tenants cannot exceed the card together, concurrent processes cannot race past a
// limit, dead processes are reclaimed, and the workload sees its fraction as the whole card.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "support/sim_fixture.h"

namespace gpufrac::testing {
namespace {

class MemoryIsolationTest : public SimFixture {
 protected:
  ProcessResult RunProbe(const std::vector<std::string>& run_args,
                         const std::vector<std::string>& probe_args, const Env& extra = {}) {
    std::vector<std::string> args = {"run"};
    args.insert(args.end(), run_args.begin(), run_args.end());
    args.push_back("--");
    args.push_back(Probe());
    args.insert(args.end(), probe_args.begin(), probe_args.end());
    return RunGpufrac(args, extra);
  }
  // The ledger's record of tenant `name` on device 0: bytes used, or -1 if absent.
  int64_t TenantUsed(const std::string& name) {
    Ledger ledger;
    if (!ledger.OpenAsTenant(Uuid(0).c_str())) return -1;
    uint64_t generation = 0;
    const int index = ledger.FindTenant(name.c_str(), &generation);
    if (index < 0) return -1;
    return static_cast<int64_t>(ledger.usage()->tenants[index].used.load());
  }
};

// Each API fills a 2 GiB limit (less the 512 MiB context) with 256 MiB pieces: exactly 6 fit.
class PerApiTest : public MemoryIsolationTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(PerApiTest, StopsExactlyAtTheLimit) {
  ProcessResult r = RunProbe({"--memory", "2GiB"}, {"fill", GetParam(), "256MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 6 * 256 * kMiB) << r.out;
  EXPECT_EQ(Field(r.out, "last_result"), 2u);  // CUDA_ERROR_OUT_OF_MEMORY
  // One line on stderr names tenant, GPU, size, limit and usage.
  EXPECT_NE(r.err.find("out of memory: tenant 'run-"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("asked for 256.0MiB; limit 2.0GiB, in use 2.0GiB"), std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

INSTANTIATE_TEST_SUITE_P(AllocationApis, PerApiTest,
                         ::testing::Values("alloc", "pitch", "managed", "async", "pool", "vmm",
                                           "array", "array3d", "mipmap"));

// A driver call made before cuInit fails as the driver fails it, and the device is still managed
// once the program initializes: the failed lookup is not remembered as "unmanaged".
TEST_P(PerApiTest, CallsBeforeCuInitDoNotTurnEnforcementOff) {
  ProcessResult r = RunProbe({"--memory", "2GiB"}, {"preinit", GetParam(), "3GiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "early_context_result"), 3u) << r.out;  // CUDA_ERROR_NOT_INITIALIZED
  EXPECT_EQ(Field(r.out, "early_vmm_result"), 3u) << r.out;
  EXPECT_EQ(Field(r.out, "result"), 2u) << r.out;  // over the limit: CUDA_ERROR_OUT_OF_MEMORY
}

TEST_F(MemoryIsolationTest, WithoutGpufracTheSameProgramGetsTheWholeCard) {
  devices_ = "H100:4GiB";
  ProcessResult r = RunProcess({Probe(), "fill", "alloc", "256MiB"}, SimEnv());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 14 * 256 * kMiB);  // 4 GiB less the context
}

TEST_F(MemoryIsolationTest, ByteExactLimit) {
  context_bytes_ = 0;
  ProcessResult r = RunProbe({"--memory", "1000000B"}, {"alloc", "alloc", "1000000"});
  EXPECT_EQ(Field(r.out, "result"), 0u) << r.err;
  r = RunProbe({"--memory", "1000000B"}, {"alloc", "alloc", "1000001"});
  EXPECT_EQ(Field(r.out, "result"), 2u) << r.err;
}

TEST_F(MemoryIsolationTest, DlsymAndDirectLinkingAreLimitedToo) {
  ProcessResult r = RunProbe({"--memory", "2GiB"}, {"--resolve=dlsym", "fill", "alloc", "256MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 6 * 256 * kMiB);
  r = RunGpufrac({"run", "--memory", "2GiB", "--",
                  std::string(GPUFRAC_BUILD_DIR) + "/tests/cuda_probe_linked", "fill", "alloc",
                  "256MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 6 * 256 * kMiB);
}

TEST_F(MemoryIsolationTest, TheWorkloadSeesItsFractionAsTheCard) {
  ProcessResult r = RunProbe({"--fraction", "0.25"}, {"info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t quarter = 20 * kGiB;
  EXPECT_EQ(Field(r.out, "cuda_total"), quarter);
  EXPECT_EQ(Field(r.out, "device_total"), quarter);
  EXPECT_EQ(Field(r.out, "cuda_free"), quarter - context_bytes_);
  EXPECT_EQ(Field(r.out, "nvml_total"), quarter);
  EXPECT_EQ(Field(r.out, "nvml_free"), quarter - context_bytes_);
  EXPECT_EQ(Field(r.out, "nvml_used"), context_bytes_);
  EXPECT_EQ(Field(r.out, "nvml2_total"), quarter);
  EXPECT_EQ(Field(r.out, "nvml2_free"), quarter - context_bytes_);
}

TEST_F(MemoryIsolationTest, FreeNeverGoesNegativeAndChurnLeavesNothing) {
  ProcessResult r = RunProbe({"--memory", "2GiB"}, {"churn", "alloc", "1GiB", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "cuda_free"), 2 * kGiB - context_bytes_);
  // Filled to the brim, free reads 0, not an error or a wrapped number.
  r = RunProbe({"--memory", "768MiB"}, {"fill", "alloc", "256MiB"});
  EXPECT_EQ(Field(r.out, "filled"), 256 * kMiB);
}

TEST_F(MemoryIsolationTest, ImportedAndIpcHandlesAreNotChargedTwice) {
  ProcessResult r = RunProbe({"--memory", "4GiB"}, {"share"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "alloc_delta"), 256 * kMiB);
  EXPECT_EQ(Field(r.out, "ipc_delta"), 0u);
  EXPECT_EQ(Field(r.out, "vmm_delta"), 256 * kMiB);  // the export, not the import
  EXPECT_EQ(Field(r.out, "after_release_delta"), 0u);
}

TEST_F(MemoryIsolationTest, BurstsAboveTheRequestUpToTheLimit) {
  ProcessResult r =
      RunProbe({"--memory", "1GiB", "--memory-limit", "3GiB"}, {"fill", "alloc", "256MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 3 * kGiB - context_bytes_);
}

// The pool is on GPU 1 and the context on GPU 0: GPU 1's limit governs the pool.
TEST_F(MemoryIsolationTest, APoolIsChargedToItsOwnGpu) {
  devices_ = "H100:80GiB,H100:80GiB";
  ProcessResult r = RunProbe({"--gpu", "0,1", "--memory", "30GiB"}, {"pool-device", "1", "20GiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "first_result"), 0u) << r.out;
  EXPECT_EQ(Field(r.out, "second_result"), 2u) << r.out;  // 40 GiB on GPU 1 is over its 30
  EXPECT_EQ(Field(r.out, "context_free"), 30 * kGiB - context_bytes_) << r.out;
  EXPECT_EQ(Field(r.out, "pool_device_free"), 10 * kGiB - context_bytes_) << r.out;
}

// What a destroyed pool cached goes back to the tenant (and the card).
TEST_F(MemoryIsolationTest, DestroyingAPoolCreditsWhatItCached) {
  ProcessResult r = RunProbe({"--memory", "10GiB"}, {"pool-destroy", "8GiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t empty = 10 * kGiB - context_bytes_;
  EXPECT_EQ(Field(r.out, "allocated_free"), empty - 8 * kGiB) << r.out;
  EXPECT_EQ(Field(r.out, "cached_free"), empty - 8 * kGiB) << r.out;  // the pool keeps it all
  EXPECT_EQ(Field(r.out, "destroyed_free"), empty) << r.out;
  EXPECT_EQ(Field(r.out, "result"), 0u) << r.out;
}

// Pools created and destroyed one after another never run out of bookkeeping.
TEST_F(MemoryIsolationTest, PoolChurnLeavesNothingCharged) {
  ProcessResult r = RunProbe({"--memory", "2GiB"}, {"pool-churn", "300"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "cycles"), 300u) << r.out;
  EXPECT_EQ(Field(r.out, "cuda_free"), 2 * kGiB - context_bytes_) << r.out;
}

// cuMemPoolDestroy with memory still allocated from the pool: the simulated driver, alone, keeps
// all the pool's memory (its cache too) until that memory is freed, then releases it at once, as
// the real driver's documentation says; the destroyed handle takes no new allocation.
TEST_F(MemoryIsolationTest, TheSimulatedDriverReleasesADestroyedPoolAtItsLastFree) {
  for (const char* free_api : {"async", "free"}) {
    SCOPED_TRACE(free_api);
    ProcessResult r =
        RunProcess({Probe(), "pool-drain", "1GiB", "1GiB", "3GiB", free_api}, SimEnv());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const uint64_t start = Field(r.out, "start_free");
    EXPECT_EQ(Field(r.out, "pooled_free"), start - 2 * kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "destroy_result"), 0u) << r.out;
    EXPECT_EQ(Field(r.out, "destroyed_free"), start - 2 * kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "reuse_result"), 1u) << r.out;  // CUDA_ERROR_INVALID_VALUE
    EXPECT_EQ(Field(r.out, "owner_is_pool"), 1u) << r.out;
    EXPECT_EQ(Field(r.out, "range_size"), kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "address_range_size"), kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "base_is_ptr"), 1u) << r.out;
    EXPECT_EQ(Field(r.out, "free_result"), 0u) << r.out;
    EXPECT_EQ(Field(r.out, "freed_free"), start) << r.out;
    EXPECT_EQ(Field(r.out, "same_handle"), 1u) << r.out;  // the released handle comes back
    EXPECT_EQ(Field(r.out, "next_free"), start - kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "end_free"), start) << r.out;
  }
}

// Regression: a pool destroyed with memory still allocated from it stayed charged for that memory
// until the process exited, though the driver releases it at the last free. Now the cache is
// credited at the destruction, the rest once the last allocation is freed (cuMemFreeAsync and a
// synchronization, or cuMemFree), and a new pool that gets the old handle is charged as its own.
class PoolDrainTest : public MemoryIsolationTest,
                      public ::testing::WithParamInterface<const char*> {};

TEST_P(PoolDrainTest, ADestroyedPoolIsCreditedWhenItsLastAllocationIsFreed) {
  // queued: 3 kernels of 200 ms run before the stream reaches the free.
  ProcessResult r =
      RunProbe({"--memory", "4GiB"}, {"pool-drain", "1GiB", "1GiB", "3GiB", GetParam()},
               {{"GPUFRAC_SIM_KERNEL_US", "200000"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t empty = 4 * kGiB - context_bytes_;
  if (std::string(GetParam()) == "captured") {
    // Freed into a graph that is never launched: the memory is still the driver's, and charged.
    EXPECT_EQ(Field(r.out, "captured_free"), empty - kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "over_captured_result"), 2u) << r.out;
    return;
  }
  if (std::string(GetParam()) == "queued") {
    // Freed on the stream but not yet run: still charged, so 3 GiB is still too much. Credited
    // when the free was queued, the tenant could hold 3 GiB beside the driver's 1 GiB.
    EXPECT_EQ(Field(r.out, "queued_free"), empty - kGiB) << r.out;
    EXPECT_EQ(Field(r.out, "over_queued_result"), 2u) << r.out;
  }
  EXPECT_EQ(Field(r.out, "start_free"), empty) << r.out;
  EXPECT_EQ(Field(r.out, "pooled_free"), empty - 2 * kGiB) << r.out;
  EXPECT_EQ(Field(r.out, "destroy_result"), 0u) << r.out;
  EXPECT_EQ(Field(r.out, "destroyed_free"), empty - kGiB) << r.out;  // the 1 GiB still allocated
  EXPECT_EQ(Field(r.out, "reuse_result"), 1u) << r.out;
  EXPECT_EQ(Field(r.out, "over_held_result"), 2u) << r.out;  // 3 GiB is more than the 2.5 left
  EXPECT_EQ(Field(r.out, "free_result"), 0u) << r.out;
  EXPECT_EQ(Field(r.out, "freed_free"), empty) << r.out;
  EXPECT_EQ(Field(r.out, "over_freed_result"), 0u) << r.out;  // fits only if it was credited
  EXPECT_EQ(Field(r.out, "same_handle"), 1u) << r.out;
  EXPECT_EQ(Field(r.out, "next_alloc_result"), 0u) << r.out;
  EXPECT_EQ(Field(r.out, "next_free"), empty - kGiB) << r.out;
  EXPECT_EQ(Field(r.out, "end_free"), empty) << r.out;
}

INSTANTIATE_TEST_SUITE_P(FreeApis, PoolDrainTest,
                         ::testing::Values("async", "free", "queued", "captured"));

TEST_F(MemoryIsolationTest, TwoHalvesCannotExceedTheCard) {
  devices_ = "H100:8GiB";
  const std::string barrier = TempDir() + "/go";
  std::vector<pid_t> runs;
  for (int i = 0; i < 2; ++i) {
    runs.push_back(StartProcess(
        {Gpufrac(), "run", "--fraction", "0.5", "--", Probe(), "fill", "alloc", "64MiB", barrier},
        SimEnv(), TempDir() + "/run" + std::to_string(i)));
  }
  uint64_t total = 0;
  for (int i = 0; i < 2; ++i) {
    const std::string out_path = TempDir() + "/run" + std::to_string(i);
    for (int t = 0; t < 1000 && ReadFile(out_path).find("filled") == std::string::npos; ++t) {
      usleep(10000);
    }
    total += Field(ReadFile(out_path), "filled");
  }
  // Both hold their fill now; together with their contexts they stay within the card.
  EXPECT_EQ(total + 2 * context_bytes_, 8 * kGiB);
  // The card itself is full: a process outside gpufrac finds no memory left.
  ProcessResult outside = RunProcess({Probe(), "alloc", "alloc", "1MiB"}, SimEnv());
  EXPECT_EQ(Field(outside.out, "context_result"), 2u) << outside.out;
  ProcessResult third = RunGpufrac({"run", "--fraction", "0.1", "--", "true"});
  EXPECT_EQ(third.exit_code, 2) << third.err;
  ASSERT_EQ(system(("touch " + barrier).c_str()), 0);
  for (pid_t pid : runs) EXPECT_EQ(WaitProcess(pid, std::chrono::seconds(30)), 0);
}

TEST_F(MemoryIsolationTest, SixtyFourProcessesOfTwoTenantsCannotRacePastTheLimits) {
  devices_ = "H100:80GiB";
  context_bytes_ = 64 * kMiB;
  const std::string dir = TempDir();
  const std::string barrier = dir + "/go";
  constexpr int kPerTenant = 32;
  std::vector<pid_t> runs;
  for (const char* tenant : {"a", "b"}) {
    // 32 processes of one tenant start together and allocate 2 MiB granules until refused.
    std::string script;
    for (int i = 0; i < kPerTenant; ++i) {
      script += Probe() + " fill alloc 2MiB " + barrier + " > " + dir + "/" + tenant +
                std::to_string(i) + " & ";
    }
    script += "wait";
    runs.push_back(StartProcess(
        {Gpufrac(), "run", "--fraction", "0.5", "--tenant", tenant, "--", "sh", "-c", script},
        SimEnv(), dir + "/" + tenant + ".out"));
  }
  std::map<std::string, uint64_t> held;
  for (const char* tenant : {"a", "b"}) {
    for (int i = 0; i < kPerTenant; ++i) {
      const std::string path = dir + "/" + tenant + std::to_string(i);
      auto done = [&] {
        const std::string out = ReadFile(path);
        return out.find("filled") != std::string::npos ||
               out.find("context_result") != std::string::npos;
      };
      for (int t = 0; t < 3000 && !done(); ++t) usleep(10000);
      // A process whose siblings took everything first is refused even its context.
      const std::string out = ReadFile(path);
      if (out.find("context_result=2") != std::string::npos) continue;
      held[tenant] += Field(out, "filled") + context_bytes_;
    }
  }
  // Every process holds its memory at this moment: the sums are simultaneous.
  for (const char* tenant : {"a", "b"}) {
    EXPECT_LE(held[tenant], 40 * kGiB + 2 * kMiB) << tenant;
    EXPECT_GE(held[tenant], 40 * kGiB - 2 * kMiB) << tenant;
    EXPECT_LE(TenantUsed(tenant), static_cast<int64_t>(40 * kGiB));
  }
  EXPECT_LE(held["a"] + held["b"], 80 * kGiB);
  ASSERT_EQ(system(("touch " + barrier).c_str()), 0);
  for (pid_t pid : runs) EXPECT_EQ(WaitProcess(pid, std::chrono::seconds(60)), 0);
}

TEST_F(MemoryIsolationTest, SigkilledProcessIsReclaimedWithinOneSecond) {
  const std::string dir = TempDir();
  const pid_t run =
      StartProcess({Gpufrac(), "run", "--memory", "4GiB", "--tenant", "victim", "--", "sh", "-c",
                    Probe() + " hold alloc 2GiB & echo $! > " + dir +
                        "/pid; wait; echo survived; exec sleep 30"},
                   SimEnv(), dir + "/run.out");
  std::string pid_text;
  for (int t = 0; t < 1000 && (pid_text = ReadFile(dir + "/pid")).empty(); ++t) usleep(10000);
  for (int t = 0; t < 1000 && TenantUsed("victim") < static_cast<int64_t>(2 * kGiB); ++t) {
    usleep(10000);
  }
  ASSERT_EQ(TenantUsed("victim"), static_cast<int64_t>(2 * kGiB + context_bytes_));
  kill(std::stoi(pid_text), SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  while (TenantUsed("victim") != 0 &&
         std::chrono::steady_clock::now() - killed < std::chrono::seconds(3)) {
    usleep(5000);
  }
  const auto took = std::chrono::steady_clock::now() - killed;
  EXPECT_EQ(TenantUsed("victim"), 0);
  EXPECT_LT(took, std::chrono::seconds(1));
  // The simulated card got its memory back too, and a new process can use it.
  ProcessResult r = RunProcess({Probe(), "info"}, SimEnv());
  EXPECT_EQ(Field(r.out, "cuda_free"), 80 * kGiB - context_bytes_) << r.out;
  kill(run, SIGTERM);
  EXPECT_EQ(WaitProcess(run, std::chrono::seconds(10)), 128 + SIGTERM);
}

TEST_F(MemoryIsolationTest, ExecDoesNotLeaveTheOldImageCharged) {
  ProcessResult r = RunProbe({"--memory", "2GiB"}, {"exec-fill", "alloc", "256MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 6 * 256 * kMiB);
}

TEST_F(MemoryIsolationTest, PassthroughSwitchTurnsControlOff) {
  devices_ = "H100:4GiB";
  ProcessResult r =
      RunProbe({"--memory", "1GiB"}, {"fill", "alloc", "256MiB"}, {{"GPUFRAC_PASSTHROUGH", "1"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 14 * 256 * kMiB);
}

TEST_F(MemoryIsolationTest, EnvironmentAloneConfiguresATenant) {
  // No gpufrac run: LD_PRELOAD plus the documented variables.
  Env env = SimEnv();
  env["LD_PRELOAD"] = std::string(GPUFRAC_BUILD_DIR) + "/lib/libgpufrac.so";
  env["GPUFRAC_TENANT"] = "selfmade";
  env["GPUFRAC_MEMORY_REQUEST"] = "1GiB";
  env["GPUFRAC_MEMORY_LIMIT"] = "0.025";  // of 80 GiB: 2 GiB
  ProcessResult r = RunProcess({Probe(), "fill", "alloc", "256MiB"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Field(r.out, "filled"), 6 * 256 * kMiB);
}

TEST_F(MemoryIsolationTest, ASelfRegistrationThatCannotBeHonouredSaysWhy) {
  // Each refusal names its cause (not "no share"), and the tenant gets nothing rather than a
  // limit raised to its request or a share it did not ask for.
  struct Case {
    std::string request, limit, message;
  };
  const std::vector<Case> cases = {
      {"2GiB", "1GiB", "GPUFRAC_MEMORY_LIMIT (1.0GiB) is below GPUFRAC_MEMORY_REQUEST (2.0GiB)"},
      {"100GiB", "", "asks 100.0GiB of device 0, which has 80.0GiB in all"},
      {"1GiB", "200GiB", "asks 200.0GiB of device 0, which has 80.0GiB in all"},
      {"lots", "", "GPUFRAC_MEMORY_REQUEST/LIMIT 'lots' has no valid entry for device 0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request + " / " + c.limit);
    Env env = SimEnv();
    env["LD_PRELOAD"] = std::string(GPUFRAC_BUILD_DIR) + "/lib/libgpufrac.so";
    env["GPUFRAC_TENANT"] = "selfmade";
    env["GPUFRAC_MEMORY_REQUEST"] = c.request;
    if (!c.limit.empty()) env["GPUFRAC_MEMORY_LIMIT"] = c.limit;
    ProcessResult r = RunProcess({Probe(), "alloc", "alloc", "1MiB"}, env);
    EXPECT_EQ(Field(r.out, "context_result"), 2u) << r.out << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("has no share"), std::string::npos) << r.err;
  }
}

TEST_F(MemoryIsolationTest, ANamedTenantWithoutAShareGetsNothing) {
  Env env = SimEnv();
  env["LD_PRELOAD"] = std::string(GPUFRAC_BUILD_DIR) + "/lib/libgpufrac.so";
  env["GPUFRAC_TENANT"] = "ghost";
  ProcessResult r = RunProcess({Probe(), "alloc", "alloc", "1MiB"}, env);
  // Even the context is refused: the tenant has no share of this GPU.
  EXPECT_EQ(Field(r.out, "context_result"), 2u) << r.out << r.err;
  EXPECT_NE(r.err.find("has no share of GPU 0"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace gpufrac::testing
