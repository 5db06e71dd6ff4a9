// Reclaim and crash recovery with the real agent: tenants that exit or are SIGKILLed are reclaimed
// with their exit status; a kill -9 of the agent and a restart adopt live tenants without
// allocating anything twice, and reclaim those that died meanwhile.
#include <gtest/gtest.h>

#include "node_test_support.h"
#include "runtime/process_identity.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class NodeRestartTest : public NodeFixture {};

bool Exited(const json& b) { return b["state"] == "exited"; }

TEST_F(NodeRestartTest, ReclaimsATenantWhoseCommandExitsAndRecordsTheStatus) {
  StartAgent();
  Create({{"name", "quick"}, {"memory", "10GiB"}, {"command", {"sh", "-c", "sleep 0.2; exit 7"}}});
  const auto start = std::chrono::steady_clock::now();
  // The promise is 1 s after the exit; the bound here is wider for loaded CI machines.
  json t = WaitTenant("quick", Exited, 4000);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(t["exit_status"], 7);
  EXPECT_EQ(t["reason"], "exited with status 7");
  EXPECT_EQ(Committed(0), 0u);
  RecordProperty(
      "reclaim_ms",
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  // The record stays until deleted, so the status can be read; deleting it forgets it.
  EXPECT_EQ(Call("DELETE", "/v1/tenants/quick").status, 200);
  EXPECT_EQ(Call("GET", "/v1/tenants/quick").status, 404);
}

TEST_F(NodeRestartTest, ReclaimsASigkilledTenantAndItsMemory) {
  StartAgent();
  json t = Create(
      {{"name", "victim"}, {"memory", "8GiB"}, {"command", {Probe(), "hold", "alloc", "4GiB"}}});
  WaitTenant("victim", [](const json& b) { return b["memory"]["used"] > 4 * kGiB - 1; });
  kill(t["pid"].get<pid_t>(), SIGKILL);
  json done = WaitTenant("victim", Exited, 4000);
  EXPECT_EQ(done["exit_status"], 128 + SIGKILL);
  EXPECT_EQ(Committed(0), 0u);
  // A tenant whose command forks a process that holds memory stays until that process ends too.
  Create({{"name", "family"},
          {"memory", "8GiB"},
          {"command",
           {"sh", "-c",
            Probe() + " hold alloc 1GiB > " + TempDir() + "/child.out & echo $! > " + TempDir() +
                "/child.pid; exit 3"}}});
  json running = WaitTenant("family", [](const json& b) { return b["processes"] == 1; });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(Call("GET", "/v1/tenants/family").body["state"], "running");
  const pid_t child = std::stoi(ReadFile(TempDir() + "/child.pid"));
  tenant_pids_.push_back(child);
  kill(child, SIGKILL);
  json gone = WaitTenant("family", Exited, 4000);
  EXPECT_EQ(gone["exit_status"], 3);
  EXPECT_EQ(Committed(0), 0u);
}

TEST_F(NodeRestartTest, AKilledAgentIsRestartedAndAdoptsLiveTenantsWithoutDoubleAllocation) {
  StartAgent();
  json live = Create(
      {{"name", "live"}, {"memory", "40GiB"}, {"command", {Probe(), "hold", "alloc", "2GiB"}}});
  json doomed = Create(
      {{"name", "doomed"}, {"memory", "10GiB"}, {"command", {Probe(), "hold", "alloc", "1GiB"}}});
  WaitTenant("live", [](const json& b) { return b["memory"]["used"] >= 2 * kGiB; });
  WaitTenant("doomed", [](const json& b) { return b["memory"]["used"] >= kGiB; });
  EXPECT_EQ(Committed(0), 50 * kGiB);

  KillAgent(SIGKILL);
  // While no agent runs: one tenant keeps running, the other dies.
  kill(doomed["pid"].get<pid_t>(), SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(kill(live["pid"].get<pid_t>(), 0), 0);

  StartAgent();
  json adopted = WaitTenant("live", [](const json& b) { return b["state"] == "running"; });
  EXPECT_EQ(adopted["adopted"], true);
  EXPECT_EQ(adopted["pid"], live["pid"]);
  EXPECT_EQ(adopted["memory"]["used"], 2 * kGiB + context_bytes_);
  json reclaimed = WaitTenant("doomed", Exited, 4000);
  EXPECT_EQ(reclaimed["exit_status"], nullptr);  // not our child any more: status unknown
  // Nothing counted twice: only the live tenant's request is committed, and exactly the rest of
  // the card can be given out.
  EXPECT_EQ(Committed(0), 40 * kGiB);
  ApiReply too_big =
      Call("POST", "/v1/tenants",
           json({{"name", "x"}, {"memory", "41GiB"}, {"command", {"sleep", "30"}}}).dump());
  EXPECT_EQ(too_big.status, 409) << too_big.raw;
  Create({{"name", "fits"}, {"memory", "40GiB"}, {"command", {"sleep", "30"}}});
  EXPECT_EQ(Committed(0), 80 * kGiB);

  // The adopted tenant is still managed: delete stops it and releases its request.
  ApiReply del = Call("DELETE", "/v1/tenants/live");
  ASSERT_EQ(del.status, 200) << del.raw;
  // Gone (or a zombie waiting for whichever process adopted the orphan to reap it).
  const pid_t pid = live["pid"].get<pid_t>();
  EXPECT_FALSE(ProcessIsAlive(pid, ProcessStartTime(pid)));
  EXPECT_EQ(Committed(0), 40 * kGiB);
}

}  // namespace
}  // namespace gpufrac::testing
