// gpufrac run end to end: bad input is refused with exit code 2, one line, nothing left behind;
// the command's exit status passes through; the workload sees only its GPU; the tenant lasts as
// long as any process the command started.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "support/sim_fixture.h"

namespace gpufrac::testing {
namespace {

class RunCommandTest : public SimFixture {
 protected:
  // Asserts a refusal: exit 2, a single line naming `expected`, and no tenant left registered.
  void ExpectRefused(const std::vector<std::string>& args, const std::string& expected) {
    ProcessResult r = RunGpufrac(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    ExpectNoTenants();
  }
  void ExpectNoTenants() {
    Ledger ledger;
    if (!ledger.OpenAsTenant(Uuid(0).c_str())) return;  // never created: nothing left
    for (const TenantLimits& t : ledger.limits()->tenants) EXPECT_EQ(t.active, 0u) << t.spec.name;
    EXPECT_EQ(ledger.Committed(), 0u);
  }

  // Runs `sh -c` under gpufrac run (4 GiB): the shell backgrounds a probe holding `hold` of GPU
  // memory, then runs `then`. Returns once the probe holds it: {gpufrac run's pid, the probe's}.
  std::pair<pid_t, pid_t> StartShellWithHoldingProbe(const std::string& dir,
                                                     const std::string& tenant,
                                                     const std::string& hold,
                                                     const std::string& then) {
    const std::string script = Probe() + " hold alloc " + hold + " > " + dir +
                               "/hold & echo $! > " + dir + "/pid; " + then;
    const pid_t run = StartProcess(
        {Gpufrac(), "run", "--memory", "4GiB", "--tenant", tenant, "--", "sh", "-c", script},
        SimEnv(), dir + "/run.out");
    std::string pid_text;
    for (int t = 0; t < 1000 && (pid_text = ReadFile(dir + "/pid")).empty(); ++t) usleep(10000);
    for (int t = 0; t < 1000 && ReadFile(dir + "/hold").find("ready") == std::string::npos; ++t) {
      usleep(10000);
    }
    EXPECT_NE(ReadFile(dir + "/hold").find("ready"), std::string::npos);
    return {run, pid_text.empty() ? -1 : std::stoi(pid_text)};
  }
};

// Kills a process at the end of a test whatever failed: a leftover probe holds the test's stderr.
struct KillOnExit {
  pid_t pid;
  ~KillOnExit() {
    if (pid > 0) kill(pid, SIGKILL);
  }
};

TEST_F(RunCommandTest, PassesTheExitStatusThrough) {
  ProcessResult r = RunGpufrac({"run", "--fraction", "0.5", "--", "sh", "-c", "exit 7"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  r = RunGpufrac({"run", "--memory", "1GiB", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectNoTenants();
}

TEST_F(RunCommandTest, ReportsDeathBySignal) {
  ProcessResult r = RunGpufrac({"run", "--fraction", "0.5", "--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.exit_code, 128 + 9) << r.err;
  ExpectNoTenants();
}

TEST_F(RunCommandTest, GivesTheWorkloadItsTenantAndOnlyItsGpu) {
  devices_ = "H100:80GiB,H100:80GiB";
  const std::string uuid1 = Uuid(1);
  ProcessResult r = RunGpufrac({"run", "--gpu", "1", "--fraction", "0.25", "--tenant", "chat", "--",
                                "sh", "-c", "echo $GPUFRAC_TENANT $CUDA_VISIBLE_DEVICES"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "chat " + uuid1 + "\n");
  // By UUID prefix too.
  r = RunGpufrac({"run", "--gpu", uuid1.substr(0, 12), "--fraction", "0.25", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(RunCommandTest, RefusesBadFractions) {
  ExpectRefused({"run", "--fraction", "0", "--", "true"}, "--fraction '0'");
  ExpectRefused({"run", "--fraction", "1.5", "--", "true"}, "--fraction '1.5'");
  ExpectRefused({"run", "--fraction", "-0.5", "--", "true"}, "--fraction '-0.5'");
  ExpectRefused({"run", "--fraction", "half", "--", "true"}, "not a number");
}

TEST_F(RunCommandTest, RefusesBadSizes) {
  ExpectRefused({"run", "--memory", "10XB", "--", "true"}, "--memory '10XB'");
  ExpectRefused({"run", "--memory", "0GiB", "--", "true"}, "out of range");
  ExpectRefused({"run", "--memory", "2GiB", "--memory-limit", "lots", "--", "true"},
                "--memory-limit 'lots'");
}

TEST_F(RunCommandTest, RefusesALimitBelowTheRequest) {
  ExpectRefused({"run", "--memory", "4GiB", "--memory-limit", "2GiB", "--", "true"},
                "below the request");
  // A fraction of the card, as the agent and serve take it: 0.025 of 80 GiB is 2 GiB.
  ExpectRefused({"run", "--memory", "4GiB", "--memory-limit", "0.025", "--", "true"},
                "memory limit 2.0GiB is below the request 4.0GiB");
}

TEST_F(RunCommandTest, ASizeAgainstAFractionIsJudgedOnEachCard) {
  // 30 GiB with a limit of a quarter of the card: below the request on the 80 GiB GPU 0, fine on
  // the 141 GiB GPU 1 (35.25 GiB), where it goes.
  devices_ = "H100:80GiB,H200:141GiB";
  ProcessResult r = RunGpufrac({"run", "--memory", "30GiB", "--memory-limit", "0.25", "--", "sh",
                                "-c", "echo $CUDA_VISIBLE_DEVICES"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Uuid(1) + "\n");
  // 40 GiB is above a quarter of either card: each refuses it, saying why.
  ExpectRefused({"run", "--memory", "40GiB", "--memory-limit", "0.25", "--", "true"},
                "does not fit: GPU 0: memory limit 20.0GiB is below the request 40.0GiB; GPU 1: "
                "memory limit 35.2GiB is below the request 40.0GiB");
}

TEST_F(RunCommandTest, ALimitBeyondTheCardIsNamedAsTheProblem) {
  // The 40 GiB request fits the 80 GiB card: the message must blame the limit, not the request.
  ExpectRefused({"run", "--fraction", "0.5", "--memory-limit", "200GiB", "--", "true"},
                "request 40.0GiB (limit 200.0GiB) does not fit: GPU 0 has 80.0GiB in all, less "
                "than the limit 200.0GiB");
  ExpectRefused({"run", "--memory", "100GiB", "--", "true"},
                "GPU 0 has 80.0GiB in all, less than the request");
  // A fractional limit is taken, and runs.
  ProcessResult r =
      RunGpufrac({"run", "--fraction", "0.25", "--memory-limit", "0.5", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(RunCommandTest, RefusesBothOrNeitherSize) {
  ExpectRefused({"run", "--", "true"}, "exactly one of --fraction");
  ExpectRefused({"run", "--fraction", "0.5", "--memory", "1GiB", "--", "true"},
                "exactly one of --fraction");
}

TEST_F(RunCommandTest, RefusesUnknownGpus) {
  ExpectRefused({"run", "--gpu", "3", "--fraction", "0.5", "--", "true"}, "unknown GPU '3'");
  ExpectRefused({"run", "--gpu", "GPU-ffffffff", "--fraction", "0.5", "--", "true"},
                "unknown GPU 'GPU-ffffffff'");
}

TEST_F(RunCommandTest, RefusesAMissingCommand) {
  ExpectRefused({"run", "--fraction", "0.5"}, "missing command");
  ExpectRefused({"run", "--fraction", "0.5", "--", "/no/such/program"}, "cannot run");
}

TEST_F(RunCommandTest, RefusesWhatDoesNotFit) {
  ExpectRefused({"run", "--memory", "100GiB", "--", "true"}, "does not fit");
  // A tenant holding 0.75 of the card leaves no room for 0.5.
  const std::string barrier = TempDir() + "/go";
  const pid_t holder =
      StartProcess({Gpufrac(), "run", "--fraction", "0.75", "--tenant", "big", "--", "sh", "-c",
                    "echo up; while [ ! -e " + barrier + " ]; do sleep 0.01; done"},
                   SimEnv(), TempDir() + "/holder.out");
  for (int i = 0; i < 500 && ReadFile(TempDir() + "/holder.out").empty(); ++i) usleep(10000);
  ProcessResult r = RunGpufrac({"run", "--fraction", "0.5", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("does not fit"), std::string::npos) << r.err;
  r = RunGpufrac({"run", "--fraction", "0.25", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // The same tenant name cannot be admitted twice on one GPU.
  r = RunGpufrac({"run", "--fraction", "0.1", "--tenant", "big", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  ASSERT_EQ(system(("touch " + barrier).c_str()), 0);
  EXPECT_EQ(WaitProcess(holder, std::chrono::seconds(20)), 0);
  ExpectNoTenants();
}

// Parent pid and state of a process, from /proc/PID/stat; {-1, 0} when it is gone.
std::pair<pid_t, char> ParentAndState(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t name_end = stat.rfind(')');
  if (name_end == std::string::npos) return {-1, 0};
  char state = 0;
  int parent = -1;
  if (sscanf(stat.c_str() + name_end + 1, " %c %d", &state, &parent) != 2) return {-1, 0};
  return {parent, state};
}

// Waits until `pid` is a child of `parent` (a leftover reparented to gpufrac run).
bool BecomesChildOf(pid_t pid, pid_t parent) {
  for (int t = 0; t < 1000; ++t) {
    if (ParentAndState(pid).first == parent) return true;
    usleep(10000);
  }
  return false;
}

// A process the command leaves running (here holding GPU memory) keeps the tenant registered until
// it exits; a signal to gpufrac run reaches it.
TEST_F(RunCommandTest, KeepsTheTenantWhileTheCommandsLeftoversRun) {
  const std::string dir = TempDir();
  auto [run, leftover] = StartShellWithHoldingProbe(
      dir, "leaver", "2GiB", "while ! grep -q ready " + dir + "/hold; do sleep 0.01; done");
  ASSERT_GT(leftover, 0);
  KillOnExit killer{leftover};
  // The shell is gone once its probe is ours: only the probe it started still runs.
  ASSERT_TRUE(BecomesChildOf(leftover, run));
  int status = 0;
  EXPECT_EQ(waitpid(run, &status, WNOHANG), 0) << "gpufrac run returned before its leftovers";
  Ledger ledger;
  ASSERT_TRUE(ledger.OpenAsTenant(Uuid(0).c_str()));
  uint64_t generation = 0;
  const int tenant = ledger.FindTenant("leaver", &generation);
  ASSERT_GE(tenant, 0) << "the tenant was removed while its process held memory";
  EXPECT_EQ(ledger.usage()->tenants[tenant].used.load(), 2 * kGiB + context_bytes_);
  kill(run, SIGTERM);
  EXPECT_EQ(WaitProcess(run, std::chrono::seconds(10)), 0);  // the shell's status
  EXPECT_NE(kill(leftover, 0), 0) << "SIGTERM did not reach the leftover probe";
  if (kill(leftover, 0) != 0) killer.pid = 0;  // reaped: the pid may name another process soon
  ExpectNoTenants();
}

// One SIGTERM while the command (a shell) still runs stops everything: the shell dies of it, and
// what it started, now gpufrac run's children, get it too. Supervisors send one SIGTERM.
TEST_F(RunCommandTest, OneSigtermStopsTheCommandAndWhatItStarted) {
  auto [run, probe] = StartShellWithHoldingProbe(TempDir(), "stopper", "1GiB", "sleep 60");
  ASSERT_GT(probe, 0);
  KillOnExit killer{probe};
  kill(run, SIGTERM);
  EXPECT_EQ(WaitProcess(run, std::chrono::seconds(10)), 128 + SIGTERM);  // the shell's status
  EXPECT_NE(kill(killer.pid, 0), 0) << "the probe the shell started outlived one SIGTERM";
  if (kill(killer.pid, 0) != 0) killer.pid = 0;
  ExpectNoTenants();
}

// Orphans of the command that end while it runs are reaped, not left as zombies.
TEST_F(RunCommandTest, OrphansThatEndWhileTheCommandRunsAreReaped) {
  const std::string dir = TempDir();
  const pid_t run = StartProcess({Gpufrac(), "run", "--memory", "1GiB", "--", "sh", "-c",
                                  "for i in 1 2 3 4 5; do (sleep 0.05 &); done; "
                                  "touch " +
                                      dir + "/spawned; sleep 2"},
                                 SimEnv(), dir + "/run.out");
  for (int t = 0; t < 1000 && access((dir + "/spawned").c_str(), F_OK) != 0; ++t) usleep(10000);
  usleep(500000);  // the sleeps (50 ms) are long over
  int zombies = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto [parent, state] = ParentAndState(std::stoi(name));
    if (parent == run && state == 'Z') ++zombies;
  }
  EXPECT_EQ(zombies, 0);
  EXPECT_EQ(WaitProcess(run, std::chrono::seconds(10)), 0);
}

TEST_F(RunCommandTest, RefusesUnknownFlags) {
  ProcessResult r = RunGpufrac({"run", "--fractoin", "0.5", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("fractoin"), std::string::npos) << r.err;
}

// The agent options (docs/node.md, "gpufrac run through the agent"): contradictions and an
// unreachable agent are one-line refusals; --no-node runs agentless as before.
TEST_F(RunCommandTest, RefusesContradictoryOrUnreachableAgentOptions) {
  ExpectRefused({"run", "--node", TempDir() + "/none.sock", "--memory", "1GiB", "--", "true"},
                "cannot reach the agent at '" + TempDir() + "/none.sock'");
  ExpectRefused({"run", "--node", "/x.sock", "--no-node", "--memory", "1GiB", "--", "true"},
                "--no-node contradicts --node");
  ExpectRefused({"run", "--token", "abc", "--no-node", "--", "true"},
                "--token needs the agent; drop --no-node");
  ExpectRefused({"run", "--token", "abc", "--fraction", "0.5", "--", "true"},
                "--fraction cannot be combined with --token");
  ExpectRefused({"run", "--node", TempDir() + "/none.sock", "--token", "abc"}, "no command given");
  ExpectRefused(
      {"run", "--node", TempDir() + "/none.sock", "--gpu", "0,1", "--memory", "1GiB", "--", "true"},
      "--gpu 0,1: the agent does not place multi-GPU (tensor-parallel) tenants yet");
  ProcessResult r =
      RunGpufrac({"run", "--no-node", "--memory", "1GiB", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  ExpectNoTenants();
}

// docs/node.md suggests exporting GPUFRAC_NODE_SOCKET for gpufrac ps. A gang refused because of
// it must name the variable (it used to say "drop --node" to someone who gave no --node) and the
// ways out, and those must work: --no-node (or GPUFRAC_NO_NODE) overrides the variable.
TEST_F(RunCommandTest, AGangRefusedForGpufracNodeSocketNamesTheVariableAndTheWayOut) {
  devices_ = "H100:80GiB,H100:80GiB";
  const std::string socket = TempDir() + "/none.sock";
  const std::vector<std::string> gang = {"run", "--gpu", "0,1", "--fraction", "0.1",
                                         "--",  "sh",    "-c",  "exit 3"};
  ProcessResult r = RunGpufrac(gang, {{"GPUFRAC_NODE_SOCKET", socket}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "gpufrac run: error: --gpu 0,1: the agent does not place multi-GPU (tensor-parallel) "
            "tenants yet, and GPUFRAC_NODE_SOCKET=" +
                socket +
                " asks for the agent; add --no-node or unset GPUFRAC_NODE_SOCKET to run it "
                "without the agent\n");
  std::vector<std::string> opted_out = gang;
  opted_out.insert(opted_out.begin() + 1, "--no-node");
  r = RunGpufrac(opted_out, {{"GPUFRAC_NODE_SOCKET", socket}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  r = RunGpufrac(gang, {{"GPUFRAC_NODE_SOCKET", socket}, {"GPUFRAC_NO_NODE", "1"}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  // Given as --node, it is still named so, and still contradicts a request for no agent.
  r = RunGpufrac({"run", "--node", socket, "--gpu", "0,1", "--fraction", "0.1", "--", "true"});
  EXPECT_EQ(r.err,
            "gpufrac run: error: --gpu 0,1: the agent does not place multi-GPU (tensor-parallel) "
            "tenants yet; drop --node to run it without the agent\n");
  r = RunGpufrac({"run", "--node", socket, "--fraction", "0.1", "--", "true"},
                 {{"GPUFRAC_NO_NODE", "1"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "gpufrac run: error: GPUFRAC_NO_NODE contradicts --node\n");
  ExpectNoTenants();
}

}  // namespace
}  // namespace gpufrac::testing
