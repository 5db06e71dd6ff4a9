// Joining the agent: gpufrac run through it (--node, or its default socket), attach-only tenants
// joined with a token, and the API socket's permissions.
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

class NodeJoinTest : public NodeFixture {};

// gpufrac run --node: the agent places and admits the tenant, the command runs under its limits,
// its exit status comes back, and the agent reclaims the tenant when it ends.
TEST_F(NodeJoinTest, RunThroughTheAgentIsGovernedByItAndPassesTheExitStatus) {
  StartAgent();
  const std::string script =
      Probe() + " alloc alloc 12GiB; " + Probe() +
      " alloc alloc 8GiB; echo tenant=$GPUFRAC_TENANT gpu=$CUDA_VISIBLE_DEVICES; "
      "exit 7";
  ProcessResult r = RunGpufrac(
      {"run", "--node", socket_, "--memory", "10GiB", "--tenant", "via", "--", "sh", "-c", script});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  // The first allocation is above the agent's limit for the tenant; the second fits.
  EXPECT_NE(r.out.find("result=2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("result=0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tenant=via gpu=" + Uuid(0) + "\n"), std::string::npos) << r.out;
  json t = WaitTenant("via", [](const json& b) { return b["state"] == "exited"; });
  EXPECT_EQ(t["attach_only"], true);
  EXPECT_EQ(t["reason"], "its attached processes exited");
  EXPECT_EQ(t["memory"]["request"], 10 * kGiB);
  EXPECT_EQ(Committed(0), 0u);
  const std::string log = ReadFile(agent_log_);
  EXPECT_NE(log.find("event=tenant.created id=via gpu=0 request=10.0GiB"), std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.reclaimed id=via"), std::string::npos) << log;

  // A fraction, compute and priority go through too; a refusal is the agent's, with exit code 2.
  r = RunGpufrac({"run", "--node", socket_, "--fraction", "0.5", "--compute", "0.3", "--priority",
                  "batch", "--tenant", "half", "--", "sh", "-c", "exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  t = Call("GET", "/v1/tenants/half").body;
  EXPECT_EQ(t["memory"]["request"], 40 * kGiB);
  EXPECT_EQ(t["compute"]["request"], 0.3);
  EXPECT_EQ(t["compute"]["priority"], "batch");
  WaitTenant("half", [](const json& b) { return b["state"] == "exited"; });
  Create({{"name", "big"}, {"memory", "70GiB"}, {"command", {"sleep", "30"}}});
  r = RunGpufrac({"run", "--node", socket_, "--memory", "20GiB", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("gpufrac run: error: the agent refused (409): does not fit: GPU 0: asked "
                       "20.0GiB, free 10.0GiB of 80.0GiB"),
            std::string::npos)
      << r.err;
  // A command that cannot run: the error is exec's, and the tenant is released.
  r = RunGpufrac(
      {"run", "--node", socket_, "--memory", "1GiB", "--tenant", "nope", "--", "/nonexistent/x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot run '/nonexistent/x'"), std::string::npos) << r.err;
  WaitTenant("nope", [](const json& b) { return b["state"] == "exited"; });
  // --node and no agent there: an error, not a silent fall back.
  r = RunGpufrac({"run", "--node", TempDir() + "/none.sock", "--memory", "1GiB", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("gpufrac run: error: cannot reach the agent"), std::string::npos) << r.err;
}

// An attach-only tenant: created without a command, it answers with a token; processes started
// elsewhere join it with gpufrac run --token (or GPUFRAC_NODE_TOKEN) and are held to its limits,
// counted as its processes, and signalled when it is deleted.
TEST_F(NodeJoinTest, AttachOnlyTenantsAreJoinedWithTheirToken) {
  StartAgent();
  json t = Create({{"name", "svc"}, {"memory", "10GiB"}, {"memory_limit", "12GiB"}});
  ASSERT_TRUE(t["token"].is_string()) << t.dump();
  const std::string token = t["token"];
  EXPECT_EQ(token.size(), 32u);
  EXPECT_EQ(t["attach_only"], true);
  EXPECT_EQ(t["pid"], 0);
  EXPECT_EQ(t["state"], "running");
  EXPECT_EQ(Committed(0), 10 * kGiB);
  // Listings never show the token.
  EXPECT_EQ(Call("GET", "/v1/tenants/svc").raw.find(token), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/tenants").raw.find(token), std::string::npos);

  ProcessResult r = RunGpufrac(
      {"run", "--node", socket_, "--token", token, "--", Probe(), "alloc", "alloc", "13GiB"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("result=2\n"), std::string::npos) << r.out;  // above the 12 GiB limit
  r = RunGpufrac({"run", "--token", token, "--", Probe(), "alloc", "alloc", "11GiB"},
                 {{"GPUFRAC_NODE_SOCKET", socket_}});
  EXPECT_NE(r.out.find("result=0\n"), std::string::npos) << r.out << r.err;
  // Its joined processes ended, but the tenant lives until deleted.
  EXPECT_EQ(Call("GET", "/v1/tenants/svc").body["state"], "running");

  // A long-running member: counted, charged, and stopped by delete.
  const std::string dir = TempDir();
  Env env = SimEnv();
  env["GPUFRAC_NODE_TOKEN"] = token;
  const pid_t member =
      StartProcess({Gpufrac(), "run", "--node", socket_, "--", Probe(), "hold", "alloc", "4GiB"},
                   env, dir + "/member.out");
  tenant_pids_.push_back(member);
  json live = WaitTenant("svc", [&](const json& b) {
    return b["memory"]["used"] == 4 * kGiB + context_bytes_ && b["processes"] == 1 &&
           b["attached"].size() == 1 && b["attached"][0] == member;
  });
  ProcessResult ps = RunGpufrac({"ps", "--node", socket_});
  EXPECT_NE(ps.out.find("(attach-only; attached " + std::to_string(member) + ")"),
            std::string::npos)
      << ps.out;
  json gone = Call("DELETE", "/v1/tenants/svc?grace=2s").body;
  EXPECT_EQ(gone["state"], "exited");
  EXPECT_EQ(gone["reason"], "deleted; its attached processes exited");
  EXPECT_EQ(WaitProcess(member, std::chrono::seconds(10)), 128 + SIGTERM);
  EXPECT_EQ(Committed(0), 0u);

  // A wrong token, or flags that would contradict the tenant's settings: one-line errors.
  r = RunGpufrac({"run", "--node", socket_, "--token", "0123", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "gpufrac run: error: the agent refused (403): no running attach-only tenant has this "
            "token\n");
  r = RunGpufrac({"run", "--node", socket_, "--token", token, "--memory", "1GiB", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "gpufrac run: error: --memory cannot be combined with --token (the tenant's own "
            "settings apply)\n");
}

// A delete signals a tenant's attached processes, so neither the agent nor a process whose end
// takes the agent with it (its parent: here this test, a supervisor in production) may join one.
TEST_F(NodeJoinTest, TheAgentAndItsAncestorsCannotJoinATenant) {
  StartAgent();
  const std::string self = std::to_string(agent_);
  const std::string parent = std::to_string(getpid());  // the agent's parent
  ApiReply r = Call("POST", "/v1/tenants",
                    json({{"name", "a"}, {"memory", "1GiB"}, {"attach_pid", agent_}}).dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["message"], "attach_pid: " + self + " is the agent itself");
  r = Call("POST", "/v1/tenants",
           json({{"name", "a"}, {"memory", "1GiB"}, {"attach_pid", getpid()}}).dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["message"], "attach_pid: " + parent + " is an ancestor of the agent");
  EXPECT_EQ(Committed(0), 0u);

  json t = Create({{"name", "svc"}, {"memory", "1GiB"}});
  for (const pid_t pid : {agent_, getpid()}) {
    r = Call("POST", "/v1/attach", json({{"token", t["token"]}, {"pid", pid}}).dump());
    EXPECT_EQ(r.status, 400) << r.raw;
    EXPECT_NE(r.raw.find("pid: " + std::to_string(pid) + " is "), std::string::npos) << r.raw;
  }
  // ASSERT: were they attached, the delete below would signal the agent and this test.
  ASSERT_EQ(Call("GET", "/v1/tenants/svc").body["attached"].size(), 0u);
  json gone = Call("DELETE", "/v1/tenants/svc?grace=1s").body;
  EXPECT_EQ(gone["state"], "exited");
  EXPECT_EQ(Call("GET", "/v1/health").status, 200);  // the agent is still here
}

// An attach-only tenant survives an agent restart with its token and its joined processes.
TEST_F(NodeJoinTest, AttachOnlyTenantsAreAdoptedAfterAnAgentRestart) {
  StartAgent();
  const std::string token = Create({{"name", "svc"}, {"memory", "10GiB"}})["token"];
  Env env = SimEnv();
  const pid_t member = StartProcess({Gpufrac(), "run", "--node", socket_, "--token", token, "--",
                                     Probe(), "hold", "alloc", "1GiB"},
                                    env, TempDir() + "/member.out");
  tenant_pids_.push_back(member);
  WaitTenant("svc", [&](const json& b) { return b["memory"]["used"] > 1 * kGiB; });
  KillAgent(SIGKILL);
  StartAgent();
  json t = WaitTenant("svc", [&](const json& b) {
    return b["adopted"] == true && b["state"] == "running" && b["attached"].size() == 1;
  });
  EXPECT_EQ(Committed(0), 10 * kGiB);
  // The token still works after the restart.
  ProcessResult r = RunGpufrac({"run", "--node", socket_, "--token", token, "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  kill(member, SIGKILL);
  EXPECT_EQ(WaitProcess(member, std::chrono::seconds(10)), 128 + SIGKILL);
  WaitTenant("svc", [](const json& b) { return b["attached"].empty() && b["processes"] == 0; });
  EXPECT_EQ(Call("GET", "/v1/tenants/svc").body["state"], "running");
}

// The API socket: mode 0660 by default, the agent's user as owner, and the configured group, so
// that operators in that group (and nobody else) may call it.
TEST_F(NodeJoinTest, TheSocketHasTheConfiguredModeAndGroup) {
  const group* g = getgrgid(getgid());
  ASSERT_NE(g, nullptr);
  StartAgent("socket_group: " + std::string(g->gr_name) + "\n");
  struct stat st;
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_uid, getuid());
  EXPECT_EQ(st.st_gid, g->gr_gid);
  KillAgent(SIGTERM);
  StartAgent("socket_mode: '0600'\n");
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Without --node, gpufrac run goes through the agent when one answers at the default socket
// (/run/gpufrac/node.sock), and runs agentless with --no-node or when none answers there. The
// default path is the host's, so the test gives itself a private /run in a mount namespace (root
// and unshare(1) needed; skipped otherwise), where nothing else can see its agent.
TEST_F(NodeJoinTest, RunUsesTheAgentAtTheDefaultSocketWhenOneAnswers) {
  if (geteuid() != 0 || RunProcess({"unshare", "-m", "true"}).exit_code != 0) {
    GTEST_SKIP() << "needs root and unshare -m for a private /run";
  }
  const std::string dir = TempDir();
  const std::string script =
      "set -u; mount --make-rprivate / && mount -t tmpfs tmpfs /run || exit 90\n"
      "g=$0; d=$1; probe=$2\n"
      "$g run --memory 1GiB --tenant before -- true; echo before=$?\n"
      "$g node --socket /run/gpufrac/node.sock --state $d/db 2>$d/agent.log & a=$!\n"
      "i=0; until $g ps --node /run/gpufrac/node.sock >/dev/null 2>&1; do\n"
      "  i=$((i+1)); [ $i -gt 200 ] && { kill $a; exit 91; }; sleep 0.1; done\n"
      "$g run --memory 10GiB --tenant dflt -- sh -c \"$probe alloc alloc 12GiB; exit 5\"; "
      "echo dflt=$?\n"
      "$g run --no-node --memory 1GiB --tenant own -- true; echo own=$?\n"
      "i=0; until $g ps --node /run/gpufrac/node.sock | grep -q '^dflt .* exited'; do\n"
      "  i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done\n"
      "kill $a; wait $a\n";
  ProcessResult r = RunProcess({"unshare", "-m", "sh", "-c", script, Gpufrac(), dir, Probe()},
                               SimEnv(), std::chrono::seconds(60));
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // Before the agent: agentless. With it: the tenant is the agent's (its limit refuses 12 GiB),
  // and the exit status comes back. --no-node: agentless again.
  EXPECT_NE(r.out.find("before=0\n"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("result=2\ndflt=5\n"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("own=0\n"), std::string::npos) << r.out << r.err;
  const std::string log = ReadFile(dir + "/agent.log");
  EXPECT_NE(log.find("event=tenant.created id=dflt gpu=0 request=10.0GiB"), std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.reclaimed id=dflt"), std::string::npos) << log;
  EXPECT_EQ(log.find("id=own"), std::string::npos) << log;
  EXPECT_EQ(log.find("id=before"), std::string::npos) << log;
}

}  // namespace
}  // namespace gpufrac::testing
