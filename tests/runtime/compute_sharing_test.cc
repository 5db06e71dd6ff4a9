// Compute sharing on the simulated GPU timeline (50 µs kernels, one at a time across processes):
// shares follow requests, idle share is lent and taken back, strict mode caps, inference goes
// first, and every launch path is governed. Tolerances are wider than the targets because a noisy
// 2-core machine delays process wake-ups; bench/runtime/compute.sh measures the exact figures.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <vector>

#include "support/sim_fixture.h"

namespace gpufrac::testing {
namespace {

constexpr double kKernelUs = 50;

// A sanitized build runs the probes several times slower on a shared 2-core machine, where a
// woken process may start late, so its bounds measure scheduling noise as much as sharing (CI
// runs saw a waking tenant at 0.366 of one 50 ms window, and two tenants keeping the GPU 0.71
// busy). The normal build keeps the tight bounds; bench/runtime/compute.sh measures the figures.
#if defined(__SANITIZE_ADDRESS__)
// How far below its half a waking tenant's one 50 ms window may fall.
constexpr double kWakeSlack = 0.2;
// The least GPU-busy fraction of the median full window two saturating tenants share.
constexpr double kBusyFloor = 0.6;
#else
constexpr double kWakeSlack = 0.12;
constexpr double kBusyFloor = 0.75;
#endif

// "w=<window> k=<kernels>" lines -> kernels per window.
std::map<uint64_t, uint64_t> Windows(const std::string& out) {
  std::map<uint64_t, uint64_t> windows;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    auto fields = Fields(line);
    if (fields.count("w") && fields.count("k")) {
      windows[std::stoull(fields["w"])] = std::stoull(fields["k"]);
    }
  }
  return windows;
}

class ComputeSharingTest : public SimFixture {
 protected:
  pid_t Start(const std::vector<std::string>& run_args, const std::vector<std::string>& probe_args,
              const std::string& name) {
    std::vector<std::string> argv = {Gpufrac(), "run"};
    argv.insert(argv.end(), run_args.begin(), run_args.end());
    argv.push_back("--");
    argv.push_back(Probe());
    argv.insert(argv.end(), probe_args.begin(), probe_args.end());
    return StartProcess(argv, SimEnv(), TempDir() + "/" + name);
  }
  std::string Output(const std::string& name) { return ReadFile(TempDir() + "/" + name); }

  // Runs two saturating tenants for 4 s and checks A's share of the GPU in every full 1 s window
  // both spent running.
  void ExpectShares(const std::vector<std::string>& a_args, const std::vector<std::string>& b_args,
                    double a_target, double tolerance, const std::string& a_graph = "") {
    std::vector<std::string> a_probe = {"spin", "4", "1000"};
    if (!a_graph.empty()) a_probe.push_back(a_graph);
    const pid_t a = Start(a_args, a_probe, "a");
    const pid_t b = Start(b_args, {"spin", "4", "1000"}, "b");
    ASSERT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0) << Output("a");
    ASSERT_EQ(WaitProcess(b, std::chrono::seconds(30)), 0) << Output("b");
    auto wa = Windows(Output("a")), wb = Windows(Output("b"));
    std::vector<double> busy;  // GPU-busy fraction of each full window
    for (const auto& [window, ka] : wa) {
      // Skip each process's first and last (partial) windows.
      if (window == wa.begin()->first || window == wa.rbegin()->first) continue;
      if (!wb.count(window) || window == wb.begin()->first || window == wb.rbegin()->first) {
        continue;
      }
      const double share = static_cast<double>(ka) / static_cast<double>(ka + wb[window]);
      EXPECT_NEAR(share, a_target, tolerance)
          << "window " << window << ": " << ka << " vs " << wb[window];
      busy.push_back(static_cast<double>(ka + wb[window]) * kKernelUs / 1e6);
    }
    ASSERT_GE(busy.size(), 1u);
    // Together they keep the GPU busy: sharing wastes little. The median window is checked, so
    // one window in which the loaded machine woke a process late does not decide it.
    std::sort(busy.begin(), busy.end());
    EXPECT_GT(busy[busy.size() / 2], kBusyFloor) << "lowest window " << busy.front();
  }
};

TEST_F(ComputeSharingTest, EqualRequestsShareEqually) {
  ExpectShares({"--fraction", "0.5"}, {"--fraction", "0.5"}, 0.5, 0.07);
}

TEST_F(ComputeSharingTest, OneToThreeRequestsShareOneToThree) {
  ExpectShares({"--fraction", "0.25"}, {"--fraction", "0.75"}, 0.25, 0.07);
}

TEST_F(ComputeSharingTest, ExplicitComputeRequestsOverrideTheMemoryFraction) {
  ExpectShares({"--memory", "8GiB", "--compute", "0.2"}, {"--memory", "8GiB", "--compute", "0.8"},
               0.2, 0.07);
}

TEST_F(ComputeSharingTest, GraphReplaysAreGovernedToo) {
  // A replays a 20-kernel captured graph; B launches kernels one by one.
  ExpectShares({"--fraction", "0.5"}, {"--fraction", "0.5"}, 0.5, 0.08, "20");
}

TEST_F(ComputeSharingTest, ACaptureSpanningLeaseChangesStaysValid) {
  // The gate synchronizes a process that lost its lease, to charge the work it left running; a
  // synchronize during a stream capture would invalidate the capture (the simulated driver fails
  // it, as CUDA's global capture mode does). A captures a 500,000-kernel graph through the gate
  // with 1 ms leases while B keeps the GPU busy, so the capture outlives several of its leases
  // (without the gate's capture check, this fails with "cuda_probe: graph").
  Env fast = SimEnv();
  fast["GPUFRAC_COMPUTE_SLICE_MS"] = "1";
  const pid_t b =
      StartProcess({Gpufrac(), "run", "--fraction", "0.5", "--", Probe(), "spin", "2", "1000"},
                   fast, TempDir() + "/b");
  usleep(200'000);
  Env tiny_kernels = fast;
  tiny_kernels["GPUFRAC_SIM_KERNEL_US"] = "1";
  const pid_t a = StartProcess(
      {Gpufrac(), "run", "--fraction", "0.5", "--", Probe(), "spin", "0.01", "1000", "500000"},
      tiny_kernels, TempDir() + "/a");
  EXPECT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0) << Output("a");
  ASSERT_EQ(WaitProcess(b, std::chrono::seconds(30)), 0) << Output("b");
}

TEST_F(ComputeSharingTest, WithoutGpufracTheTimelineIsOneGpu) {
  // The simulated timeline itself: two plain processes never get more than one GPU-second per
  // second together (kernels run one at a time), and neither is shut out.
  const pid_t a = StartProcess({Probe(), "spin", "3", "1000"}, SimEnv(), TempDir() + "/a");
  const pid_t b = StartProcess({Probe(), "spin", "3", "1000"}, SimEnv(), TempDir() + "/b");
  ASSERT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0);
  ASSERT_EQ(WaitProcess(b, std::chrono::seconds(30)), 0);
  auto wa = Windows(Output("a")), wb = Windows(Output("b"));
  int checked = 0;
  for (const auto& [w, ka] : wa) {
    if (!wb.count(w)) continue;
    // Launches run ahead of execution by at most 8 queued kernels per process.
    EXPECT_LE((ka + wb[w]) * kKernelUs, 1e6 + 2 * 8 * kKernelUs) << "window " << w;
    ++checked;
  }
  EXPECT_GE(checked, 2);
  uint64_t total_a = 0, total_b = 0;
  for (const auto& [w, k] : wa) total_a += k;
  for (const auto& [w, k] : wb) total_b += k;
  EXPECT_GT(total_a, (total_a + total_b) / 10);
  EXPECT_GT(total_b, (total_a + total_b) / 10);
}

TEST_F(ComputeSharingTest, StrictHalfGetsHalfOnAnIdleGpu) {
  const pid_t a = Start({"--fraction", "0.5", "--mode", "strict"}, {"spin", "3", "1000"}, "a");
  ASSERT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0);
  auto wa = Windows(Output("a"));
  ASSERT_GE(wa.size(), 3u);
  for (auto it = std::next(wa.begin()); it != std::prev(wa.end()); ++it) {
    EXPECT_NEAR(it->second * kKernelUs / 1e6, 0.5, 0.05) << "window " << it->first;
  }
}

// A strict tenant with no compute request (registered by hand: gpufrac run refuses it) is held to
// the minimal share, not left uncapped.
TEST_F(ComputeSharingTest, AStrictTenantWithoutAComputeRequestGetsTheMinimalShare) {
  Ledger owner;
  ASSERT_TRUE(owner.OpenAsOwner(Uuid(0).c_str(), 80 * kGiB));
  TenantSpec spec;
  snprintf(spec.name, sizeof spec.name, "nothing");
  spec.memory_request = spec.memory_limit = 8 * kGiB;
  spec.compute_request = spec.compute_limit = 0;
  spec.compute_mode = ComputeMode::kStrict;
  int index = -1;
  char why[200] = {};
  ASSERT_TRUE(owner.RegisterTenant(spec, getpid(), &index, why, sizeof why)) << why;
  Env env = SimEnv();
  env["LD_PRELOAD"] = std::string(GPUFRAC_BUILD_DIR) + "/lib/libgpufrac.so";
  env["GPUFRAC_TENANT"] = "nothing";
  ProcessResult r = RunProcess({Probe(), "spin", "3", "1000"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Throttled this hard, the probe reaches few window boundaries: count its kernels in all.
  uint64_t kernels = 0;
  for (const auto& [window, k] : Windows(r.out)) kernels += k;
  EXPECT_LT(kernels * kKernelUs / 3e6, 0.05) << r.out;
  owner.UnregisterTenant(index, owner.limits()->tenants[index].generation);
}

TEST_F(ComputeSharingTest, ALoneFairTenantBorrowsTheIdleGpu) {
  const pid_t plain = StartProcess({Probe(), "spin", "2", "1000"}, SimEnv(), TempDir() + "/plain");
  ASSERT_EQ(WaitProcess(plain, std::chrono::seconds(30)), 0);
  const pid_t a = Start({"--fraction", "0.25"}, {"spin", "2", "1000"}, "a");
  ASSERT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0);
  auto wp = Windows(Output("plain")), wa = Windows(Output("a"));
  ASSERT_GE(wp.size(), 2u);
  ASSERT_GE(wa.size(), 2u);
  const double plain_rate = static_cast<double>(std::next(wp.begin())->second);
  const double fair_rate = static_cast<double>(std::next(wa.begin())->second);
  EXPECT_GE(fair_rate / plain_rate, 0.9) << fair_rate << " vs " << plain_rate;
}

// The 100 ms target is measured by bench/runtime (docs/results/runtime.md): here B's share is
// checked in its third and fourth 50 ms windows, the better of the two, since on a loaded 2-core
// machine one window can measure a late wake-up of B itself (a CI run saw 0.215 in one).
TEST_F(ComputeSharingTest, AWakingTenantRegainsItsShareWithin200ms) {
  const pid_t a = Start({"--fraction", "0.5"}, {"spin", "3", "1000"}, "a");
  usleep(1'000'000);  // A alone has borrowed the whole GPU
  // B counts its kernels in 50 ms windows from its start (1,000 kernels fit in 50 ms).
  const pid_t b = Start({"--fraction", "0.5"}, {"spin", "0.8", "50"}, "b");
  ASSERT_EQ(WaitProcess(b, std::chrono::seconds(30)), 0);
  ASSERT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0);
  auto wb = Windows(Output("b"));
  ASSERT_GE(wb.size(), 8u);
  // Window 0 is partial; windows 2+ start at least 100 ms after B did.
  std::vector<double> shares;
  for (const auto& [window, k] : wb) shares.push_back(static_cast<double>(k) / 1000.0);
  EXPECT_GE(std::max(shares[2], shares[3]), 0.5 - kWakeSlack)
      << "B's share 100-150 ms after it woke: " << shares[2] << ", 150-200 ms: " << shares[3];
  std::vector<double> later(shares.begin() + 2, shares.end());
  std::sort(later.begin(), later.end());
  EXPECT_NEAR(later[later.size() / 2], 0.5, 0.1) << "B's median share after 100 ms";
}

TEST_F(ComputeSharingTest, InferenceBurstsGoBeforeBatch) {
  const pid_t alone =
      Start({"--fraction", "0.5", "--tenant", "inf"}, {"bursts", "60", "100", "20"}, "alone");
  ASSERT_EQ(WaitProcess(alone, std::chrono::seconds(30)), 0);
  const pid_t batch = Start({"--fraction", "0.5", "--tenant", "train", "--priority", "batch"},
                            {"spin", "3", "1000"}, "batch");
  usleep(300'000);
  const pid_t shared =
      Start({"--fraction", "0.5", "--tenant", "inf"}, {"bursts", "60", "100", "20"}, "shared");
  ASSERT_EQ(WaitProcess(shared, std::chrono::seconds(30)), 0);
  ASSERT_EQ(WaitProcess(batch, std::chrono::seconds(30)), 0);
  const double alone_p99 = static_cast<double>(Field(Output("alone"), "p99_us"));
  const double shared_p99 = static_cast<double>(Field(Output("shared"), "p99_us"));
  const double alone_p50 = static_cast<double>(Field(Output("alone"), "p50_us"));
  const double shared_p50 = static_cast<double>(Field(Output("shared"), "p50_us"));
  EXPECT_LE(shared_p50, 1.15 * alone_p50) << Output("shared");
  EXPECT_LE(shared_p99, 1.6 * alone_p99) << Output("shared") << " alone " << Output("alone");
  // Batch still got the rest of the GPU while inference ran: inference needs a quarter of it, so
  // batch gets well over its guaranteed half (about 75%; leases handed to the inference tenant
  // between bursts, which sat idle, once held it at 50%).
  auto wb = Windows(Output("batch"));
  ASSERT_GE(wb.size(), 3u);
  EXPECT_GE(std::next(wb.begin(), 1)->second * kKernelUs / 1e6, 0.6);
}

TEST_F(ComputeSharingTest, ADeepLaunchQueueDoesNotDelayInference) {
  // Real launch queues hold hundreds of kernels. With a 1,000-kernel queue on the simulated GPU,
  // a batch tenant alone runs 50 ms ahead of the GPU; while an inference tenant is registered
  // next to it, busy or idle, the gate bounds the batch tenant's queued work with events, so each
  // burst waits for a few kernels, not 50 ms of them. The control run without the bound shows
  // the difference.
  auto burst_p50 = [&](const std::string& inflight, bool with_batch, const std::string& tag) {
    Env env = SimEnv();
    env["GPUFRAC_SIM_QUEUE_DEPTH"] = "1000";
    env["GPUFRAC_COMPUTE_INFLIGHT"] = inflight;
    pid_t batch = -1;
    if (with_batch) {
      batch = StartProcess({Gpufrac(), "run", "--fraction", "0.5", "--tenant", "train",
                            "--priority", "batch", "--", Probe(), "spin", "2.3", "1000"},
                           env, TempDir() + "/batch-" + tag);
      usleep(300'000);
    }
    // Bursts 60 ms apart: between them the inference tenant is idle (no launch for longer than
    // two slices), so the batch tenant holds the GPU alone and would queue deep again.
    const pid_t inf = StartProcess({Gpufrac(), "run", "--fraction", "0.5", "--tenant", "inf", "--",
                                    Probe(), "bursts", "30", "100", "60"},
                                   env, TempDir() + "/inf-" + tag);
    EXPECT_EQ(WaitProcess(inf, std::chrono::seconds(30)), 0) << Output("inf-" + tag);
    if (with_batch) {
      EXPECT_EQ(WaitProcess(batch, std::chrono::seconds(30)), 0);
    }
    return static_cast<double>(Field(Output("inf-" + tag), "p50_us"));
  };
  const double alone = burst_p50("on", false, "alone");
  const double bounded = burst_p50("on", true, "bounded");
  const double unbounded = burst_p50("off", true, "unbounded");
  EXPECT_LE(bounded, 1.15 * alone) << "alone " << alone << " us, unbounded " << unbounded << " us";
  EXPECT_GT(unbounded, 3 * alone) << "the scenario no longer exercises a deep queue";
}

TEST_F(ComputeSharingTest, ATensorParallelTenantRunsItsRanksTogether) {
  // One tenant over two GPUs (gpufrac run --gpu 0,1), its two ranks meeting at a barrier after
  // every 1 ms step, next to a saturating single-GPU tenant with the same request on each GPU.
  // With aligned leases the ranks hold their GPUs at the same time and the gang keeps half its
  // pace alone (50% in every run measured); with independent leases (GPUFRAC_COMPUTE_GANG=off) a
  // rank often waits a whole slice at the barrier for the other, and the gang kept 16-45% of its
  // pace, depending on how the two GPUs' slices happened to fall (bench/runtime has the figures).
  auto iterations = [&](bool neighbours, const std::string& tag) {
    Env env = SimEnv();
    env["GPUFRAC_SIM_GPUS"] = "H100:80GiB,H100:80GiB";
    std::vector<pid_t> others;
    for (int gpu = 0; neighbours && gpu < 2; ++gpu) {
      others.push_back(StartProcess({Gpufrac(), "run", "--gpu", std::to_string(gpu), "--fraction",
                                     "0.5", "--", Probe(), "spin", "3.5", "1000"},
                                    env, TempDir() + "/n" + std::to_string(gpu) + tag));
    }
    if (neighbours) usleep(200'000);
    const pid_t tp = StartProcess({Gpufrac(), "run", "--gpu", "0,1", "--fraction", "0.5",
                                   "--tenant", "tp", "--", Probe(), "ranks", "2.5", "20"},
                                  env, TempDir() + "/tp" + tag);
    EXPECT_EQ(WaitProcess(tp, std::chrono::seconds(30)), 0) << Output("tp" + tag);
    for (pid_t p : others) EXPECT_EQ(WaitProcess(p, std::chrono::seconds(30)), 0);
    return static_cast<double>(Field(Output("tp" + tag), "iterations"));
  };
  const double alone = iterations(false, "alone");
  const double aligned = iterations(true, "aligned");
  EXPECT_GE(aligned, 0.45 * alone) << "alone " << alone;
}

TEST_F(ComputeSharingTest, AGangIsAdmittedOnEveryGpuOrNone) {
  Env env = SimEnv();
  env["GPUFRAC_SIM_GPUS"] = "H100:80GiB,H100:80GiB";
  const std::string barrier = TempDir() + "/go";
  // GPU 1 is three-quarters taken: a 0.5 gang over GPUs 0 and 1 does not fit, and GPU 0 must be
  // left as it was.
  const pid_t holder = StartProcess({Gpufrac(), "run", "--gpu", "1", "--fraction", "0.75", "--",
                                     Probe(), "fill", "alloc", "1GiB", barrier},
                                    env, TempDir() + "/holder");
  // The holder's share is taken once it has filled it (a sanitized build starts slowly).
  for (int i = 0; i < 3000 && Output("holder").find("filled=") == std::string::npos; ++i) {
    usleep(10'000);
  }
  if (Output("holder").find("filled=") == std::string::npos) {
    ASSERT_EQ(system(("touch " + barrier).c_str()), 0);
    FAIL() << "the holder never filled its share: " << Output("holder");
  }
  ProcessResult refused = RunProcess(
      {Gpufrac(), "run", "--gpu", "0,1", "--fraction", "0.5", "--", Probe(), "info"}, env);
  EXPECT_NE(refused.exit_code, 0) << refused.err;
  EXPECT_NE(refused.err.find("GPU 1"), std::string::npos) << refused.err;
  ProcessResult whole =
      RunProcess({Gpufrac(), "run", "--gpu", "0", "--fraction", "1", "--", Probe(), "info"}, env);
  EXPECT_EQ(whole.exit_code, 0) << whole.err;
  ProcessResult twice = RunProcess(
      {Gpufrac(), "run", "--gpu", "0,0", "--fraction", "0.5", "--", Probe(), "info"}, env);
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.err.find("named twice"), std::string::npos) << twice.err;
  ASSERT_EQ(system(("touch " + barrier).c_str()), 0);
  EXPECT_EQ(WaitProcess(holder, std::chrono::seconds(30)), 0);
}

TEST_F(ComputeSharingTest, BadComputeFlagsAreRefused) {
  for (const auto& [args, expected] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--compute", "1.5"}, "--compute '1.5'"},
           {{"--compute-limit", "-1"}, "--compute-limit '-1'"},
           {{"--mode", "greedy"}, "--mode 'greedy'"},
           {{"--priority", "urgent"}, "--priority 'urgent'"},
           {{"--mode", "strict", "--compute-limit", "0.9"}, "cannot be combined"},
           {{"--compute", "0.6", "--compute-limit", "0.3"}, "below the compute request"},
           {{"--mode", "strict", "--compute", "0"}, "--mode strict needs --compute above 0"},
           {{"--compute", "0", "--compute-limit", "0"}, "--compute-limit '0'"}}) {
    std::vector<std::string> argv = {"run", "--fraction", "0.5"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--", "true"});
    ProcessResult r = RunGpufrac(argv);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
  }
  // Compute guarantees cannot add up to more than the GPU.
  const std::string barrier = TempDir() + "/go";
  const pid_t holder =
      StartProcess({Gpufrac(), "run", "--memory", "1GiB", "--compute", "0.7", "--", "sh", "-c",
                    "echo up; while [ ! -e " + barrier + " ]; do sleep 0.01; done"},
                   SimEnv(), TempDir() + "/holder");
  for (int i = 0; i < 500 && Output("holder").empty(); ++i) usleep(10000);
  ProcessResult r = RunGpufrac({"run", "--memory", "1GiB", "--compute", "0.5", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("compute request 0.500 does not fit"), std::string::npos) << r.err;
  ASSERT_EQ(system(("touch " + barrier).c_str()), 0);
  EXPECT_EQ(WaitProcess(holder, std::chrono::seconds(10)), 0);
}

TEST_F(ComputeSharingTest, TheLedgerExposesGpuTimeShareAndThrottling) {
  // Both tenants spin long enough for a slow (sanitized) start; the ledger is polled until each
  // has used and waited for GPU time, instead of being read once after a fixed sleep.
  const pid_t a = Start({"--fraction", "0.5", "--tenant", "a"}, {"spin", "4", "1000"}, "a");
  const pid_t b = Start({"--fraction", "0.5", "--tenant", "b"}, {"spin", "4", "1000"}, "b");
  // The ledger exists once the first `gpufrac run` has created it.
  Ledger ledger;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!ledger.OpenAsTenant(Uuid(0).c_str()) && std::chrono::steady_clock::now() < deadline) {
    usleep(20'000);
  }
  ASSERT_TRUE(ledger.OpenAsTenant(Uuid(0).c_str()));
  auto usage = [&ledger](const char* name) -> const TenantUsage* {
    uint64_t generation = 0;
    const int i = ledger.FindTenant(name, &generation);
    return i < 0 ? nullptr : &ledger.usage()->tenants[i];
  };
  auto ready = [&usage](const char* name) {
    const TenantUsage* u = usage(name);
    return u != nullptr && u->gpu_time_ns.load() > 200'000'000u &&
           u->throttled_ns.load() > 100'000'000u;
  };
  while (!(ready("a") && ready("b")) && std::chrono::steady_clock::now() < deadline) {
    usleep(20'000);
  }
  for (const char* name : {"a", "b"}) {
    const TenantUsage* u = usage(name);
    ASSERT_NE(u, nullptr) << name << " never appeared in the ledger";
    EXPECT_GT(u->gpu_time_ns.load(), 200'000'000u) << name;
    EXPECT_GT(u->throttled_ns.load(), 100'000'000u) << name;
    EXPECT_NEAR(u->share_permille.load(), 500u, 10u) << name;
  }
  EXPECT_EQ(WaitProcess(a, std::chrono::seconds(30)), 0);
  EXPECT_EQ(WaitProcess(b, std::chrono::seconds(30)), 0);
}

}  // namespace
}  // namespace gpufrac::testing
