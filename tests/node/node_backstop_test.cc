// gpufrac node's NVML backstop against processes that allocate outside the interposer, on the
// real agent and the simulated driver's NVML.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "node_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class NodeBackstopTest : public NodeFixture {};

// The NVML backstop: a process allocating on the agent's GPU without the interposer (plain
// LD_LIBRARY_PATH to the simulated driver) belongs to no tenant; warn mode flags it in the log,
// the API and /metrics, and leaves it running. A tenant under the interposer is not flagged, and
// NVML's figure for it is what the ledger charged.
TEST_F(NodeBackstopTest, BackstopFlagsAProcessAllocatingOutsideTheInterposer) {
  StartAgent("backstop:\n  mode: warn\n  interval: 100ms\n");
  json good = Create(
      {{"name", "good"}, {"memory", "10GiB"}, {"command", {Probe(), "hold", "alloc", "2GiB"}}});
  WaitTenant("good", [&](const json& b) {
    return b["memory"]["used"] == 2 * kGiB + context_bytes_ &&
           b["memory"]["nvml_used"].is_number() &&
           b["memory"]["nvml_used"] == 2 * kGiB + context_bytes_;
  });
  const pid_t stranger =
      StartProcess({Probe(), "hold", "alloc", "4GiB"}, SimEnv(), TempDir() + "/stranger.out");
  tenant_pids_.push_back(stranger);
  json offender;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (offender.is_null() && std::chrono::steady_clock::now() < deadline) {
    const json b = Call("GET", "/v1/backstop").body;
    for (const json& o : b["offenders"]) {
      if (o["pid"] == stranger) offender = o;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(offender.is_null()) << Call("GET", "/v1/backstop").raw;
  EXPECT_EQ(offender["reason"], "no_tenant");
  EXPECT_EQ(offender["action"], "flagged");
  EXPECT_TRUE(offender["tenant"].is_null());
  EXPECT_EQ(offender["used"], 4 * kGiB + context_bytes_);
  EXPECT_EQ(offender["gpu"], 0);
  // Warn mode leaves it running; the tenant within its limit is not an offender.
  EXPECT_EQ(kill(stranger, 0), 0);
  EXPECT_EQ(Call("GET", "/v1/backstop").body["offenders"].size(), 1u);
  const std::string labels = "gpu=\"0\",uuid=\"" + Uuid(0) + "\"";
  const std::string metrics = Call("GET", "/metrics").raw;
  EXPECT_NE(metrics.find("gpufrac_backstop_flagged_total{" + labels + ",reason=\"no_tenant\"} 1\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find("gpufrac_backstop_flagged_total{" + labels + ",reason=\"over_limit\"} 0\n"),
      std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_backstop_killed_total{" + labels + ",reason=\"no_tenant\"} 0\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_gpu_memory_unattributed_bytes{" + labels + "} " +
                         std::to_string(4 * kGiB + context_bytes_) + "\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_backstop_offender_memory_bytes{gpu=\"0\",pid=\"" +
                         std::to_string(stranger) +
                         "\",tenant=\"\",reason=\"no_tenant\",action=\"flagged\"}"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_tenant_memory_nvml_bytes{tenant=\"good\",gpu=\"0\"} " +
                         std::to_string(2 * kGiB + context_bytes_) + "\n"),
            std::string::npos);
  const std::string log = ReadFile(agent_log_);
  EXPECT_NE(log.find("event=backstop.flagged pid=" + std::to_string(stranger) +
                     " gpu=0 tenant=none reason=no_tenant used=4.5GiB"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("event=backstop.killed"), std::string::npos);
  // Once it ends, it is no longer an offender; the flag is counted once.
  kill(stranger, SIGKILL);
  EXPECT_EQ(WaitProcess(stranger, std::chrono::seconds(10)), 128 + SIGKILL);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Call("GET", "/v1/backstop").body["offenders"].empty() &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(Call("GET", "/v1/backstop").body["offenders"].empty());
  EXPECT_NE(
      Call("GET", "/metrics")
          .raw.find("gpufrac_backstop_flagged_total{" + labels + ",reason=\"no_tenant\"} 1\n"),
      std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/tenants/good").body["state"], "running");
}

// Kill mode: a stranger on the GPU is killed, and so is a tenant's process that went around the
// interposer (its shell drops LD_PRELOAD) and holds more than the tenant's limit; the tenant's
// record says why. A tenant within its limit is untouched.
TEST_F(NodeBackstopTest, BackstopKillsStrangersAndTenantsThatBypassedTheInterposer) {
  StartAgent("backstop:\n  mode: kill\n  interval: 100ms\n  tolerance: 0\n");
  Create({{"name", "good"}, {"memory", "10GiB"}, {"command", {Probe(), "hold", "alloc", "8GiB"}}});
  WaitTenant("good",
             [&](const json& b) { return b["memory"]["used"] == 8 * kGiB + context_bytes_; });
  Create({{"name", "escaper"},
          {"memory", "10GiB"},
          {"command", {"sh", "-c", "unset LD_PRELOAD; exec " + Probe() + " hold alloc 20GiB"}}});
  json dead = WaitTenant(
      "escaper", [](const json& b) { return b["state"] == "exited"; }, 15000);
  EXPECT_EQ(dead["exit_status"], 128 + SIGKILL);
  EXPECT_NE(dead["reason"].get<std::string>().find(
                "killed by the NVML backstop: process " + std::to_string(dead["pid"].get<int>()) +
                " holds 20.5GiB on GPU 0; tenant escaper's processes hold 20.5GiB, above its "
                "limit and tolerance (10.0GiB)"),
            std::string::npos)
      << dead.dump();
  const pid_t stranger =
      StartProcess({Probe(), "hold", "alloc", "1GiB"}, SimEnv(), TempDir() + "/stranger.out");
  tenant_pids_.push_back(stranger);
  EXPECT_EQ(WaitProcess(stranger, std::chrono::seconds(15)), 128 + SIGKILL);
  EXPECT_EQ(Call("GET", "/v1/tenants/good").body["state"], "running");
  const std::string labels = "gpu=\"0\",uuid=\"" + Uuid(0) + "\"";
  const std::string metrics = Call("GET", "/metrics").raw;
  for (const char* reason : {"no_tenant", "over_limit"}) {
    for (const char* family : {"flagged", "killed"}) {
      EXPECT_NE(metrics.find("gpufrac_backstop_" + std::string(family) + "_total{" + labels +
                             ",reason=\"" + reason + "\"} 1\n"),
                std::string::npos)
          << family << " " << reason << "\n"
          << metrics;
    }
  }
  const std::string log = ReadFile(agent_log_);
  EXPECT_NE(log.find("event=backstop.killed pid=" + std::to_string(stranger) +
                     " gpu=0 tenant=none reason=no_tenant"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.killed id=escaper"), std::string::npos);
}

// backstop.mode: off samples nothing and exports no backstop series.
TEST_F(NodeBackstopTest, BackstopOffLeavesStrangersAlone) {
  StartAgent("backstop:\n  mode: off\n");
  const pid_t stranger =
      StartProcess({Probe(), "hold", "alloc", "1GiB"}, SimEnv(), TempDir() + "/stranger.out");
  tenant_pids_.push_back(stranger);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  json b = Call("GET", "/v1/backstop").body;
  EXPECT_EQ(b["mode"], "off");
  EXPECT_EQ(b["samples"], 0);
  EXPECT_EQ(Call("GET", "/metrics").raw.find("gpufrac_backstop_"), std::string::npos);
  EXPECT_EQ(kill(stranger, 0), 0);
}

}  // namespace
}  // namespace gpufrac::testing
