// Memory-burst reclaim with the real agent: a tenant bursting above its request into memory nobody
// was promised is notified (its burst_signal) when a new request needs that memory, and killed if
// it has not given it back by the deadline.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "node_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class NodeBurstTest : public NodeFixture {};

TEST_F(NodeBurstTest, ABorrowerThatGivesMemoryBackOnNoticeKeepsRunning) {
  StartAgent("burst_reclaim_deadline: 3s\n");
  // The shell frees the burst (ends its CUDA child) when notified, and keeps running.
  const std::string script = Probe() +
                             " hold alloc 60GiB & c=$!; trap 'kill $c' USR1; wait $c; "
                             "while :; do sleep 0.1; done";
  Create({{"name", "borrower"},
          {"memory", "10GiB"},
          {"memory_limit", "80GiB"},
          {"burst_signal", "SIGUSR1"},
          {"command", {"sh", "-c", script}}});
  WaitTenant("borrower", [](const json& b) { return b["memory"]["used"] >= 60 * kGiB; });
  EXPECT_EQ(Committed(0), 60 * kGiB + context_bytes_);
  // 30 GiB is not free (19.5 GiB is), but the borrower holds 50.5 GiB above its request.
  json t = Create({{"name", "needs"}, {"memory", "30GiB"}, {"command", {"sleep", "30"}}});
  EXPECT_EQ(t["gpu"], 0);
  json b = Call("GET", "/v1/tenants/borrower").body;
  EXPECT_EQ(b["state"], "running");
  EXPECT_LE(b["memory"]["used"].get<uint64_t>(), 10 * kGiB);
  EXPECT_EQ(Committed(0), 40 * kGiB);
}

TEST_F(NodeBurstTest, ABorrowerThatIgnoresTheNoticeIsKilledAtTheDeadline) {
  StartAgent("burst_reclaim_deadline: 300ms\n");
  // SIGUSR1 ignored (an ignored signal stays ignored across exec): told, and does nothing.
  json hog =
      Create({{"name", "hog"},
              {"memory", "10GiB"},
              {"memory_limit", "80GiB"},
              {"burst_signal", "SIGUSR1"},
              {"command", {"sh", "-c", "trap '' USR1; exec " + Probe() + " hold alloc 60GiB"}}});
  WaitTenant("hog", [](const json& b) { return b["memory"]["used"] >= 60 * kGiB; });
  // A tenant with its own request on the card is not a borrower and is left alone.
  Create({{"name", "modest"}, {"memory", "5GiB"}, {"command", {"sleep", "30"}}});
  json t = Create({{"name", "needs"}, {"memory", "30GiB"}, {"command", {"sleep", "30"}}});
  EXPECT_EQ(t["gpu"], 0);
  json dead = WaitTenant("hog", [](const json& b) { return b["state"] == "exited"; });
  EXPECT_EQ(dead["exit_status"], 128 + SIGKILL);
  EXPECT_NE(dead["reason"].get<std::string>().find("kept borrowed memory"), std::string::npos)
      << dead.dump();
  EXPECT_EQ(Call("GET", "/v1/tenants/modest").body["state"], "running");
  EXPECT_EQ(Committed(0), 35 * kGiB);
  EXPECT_NE(ReadFile(agent_log_).find("event=tenant.burst_notified id=hog gpu=0 signal=10"),
            std::string::npos);
  // When even reclaiming every burst would not make room, nothing is killed and the answer is 409.
  ApiReply r =
      Call("POST", "/v1/tenants",
           json({{"name", "x"}, {"memory", "50GiB"}, {"command", {"sleep", "30"}}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(Call("GET", "/v1/tenants/modest").body["state"], "running");
}

TEST_F(NodeBurstTest, ABorrowerNotifiedThroughItsHttpHookGivesMemoryBack) {
  StartAgent("burst_reclaim_deadline: 5s\n");
  const int port = FreePort();
  const std::string dir = TempDir();
  // The tenant: an HTTP server holding 60 GiB in a CUDA child; the hook ends the child.
  std::ofstream(dir + "/tenant.py")
      << "import http.server, subprocess, sys\n"
      << "class H(http.server.BaseHTTPRequestHandler):\n"
      << "    def do_POST(self):\n"
      << "        body = self.rfile.read(int(self.headers['Content-Length']))\n"
      << "        open('" << dir << "/notice.json', 'wb').write(body)\n"
      << "        child.kill(); child.wait()\n"
      << "        self.send_response(200); self.end_headers()\n"
      << "    def log_message(self, *args): pass\n"
      // Listening before the CUDA child starts: the hook can be called once the memory is held.
      << "server = http.server.HTTPServer(('127.0.0.1', " << port << "), H)\n"
      << "child = subprocess.Popen(['" << Probe() << "', 'hold', 'alloc', '60GiB'])\n"
      << "server.serve_forever()\n";
  Create({{"name", "server"},
          {"memory", "10GiB"},
          {"memory_limit", "80GiB"},
          {"burst_hook", "http://127.0.0.1:" + std::to_string(port) + "/reclaim"},
          {"command", {"python3", dir + "/tenant.py"}}});
  WaitTenant("server", [](const json& b) { return b["memory"]["used"] >= 60 * kGiB; });
  json t = Create({{"name", "needs"}, {"memory", "30GiB"}, {"command", {"sleep", "30"}}});
  EXPECT_EQ(t["gpu"], 0);
  const json notice = json::parse(ReadFile(dir + "/notice.json"), nullptr, false);
  ASSERT_FALSE(notice.is_discarded()) << ReadFile(dir + "/notice.json");
  EXPECT_EQ(notice["tenant"], "server");
  EXPECT_EQ(notice["gpu"], 0);
  EXPECT_EQ(notice["give_back_bytes"], 50 * kGiB + context_bytes_);
  EXPECT_EQ(notice["deadline_ms"], 5000);
  EXPECT_EQ(Call("GET", "/v1/tenants/server").body["state"], "running");
  EXPECT_EQ(Committed(0), 40 * kGiB);
}

// An attach-only tenant has no command: the notice goes to the processes that joined it.
TEST_F(NodeBurstTest, AnAttachOnlyBorrowerIsNotifiedThroughItsMembers) {
  StartAgent("burst_reclaim_deadline: 3s\n");
  json t = Create({{"name", "borrower"},
                   {"memory", "10GiB"},
                   {"memory_limit", "80GiB"},
                   {"burst_signal", "SIGUSR1"}});
  const std::string script = Probe() +
                             " hold alloc 60GiB & c=$!; trap 'kill $c' USR1; wait $c; "
                             "while :; do sleep 0.1; done";
  const pid_t member = StartProcess({Gpufrac(), "run", "--node", socket_, "--token",
                                     t["token"].get<std::string>(), "--", "sh", "-c", script},
                                    SimEnv(), TempDir() + "/member.out");
  tenant_pids_.push_back(member);
  WaitTenant("borrower", [](const json& b) { return b["memory"]["used"] >= 60 * kGiB; });
  json n = Create({{"name", "needs"}, {"memory", "30GiB"}, {"command", {"sleep", "30"}}});
  EXPECT_EQ(n["gpu"], 0);
  json b = Call("GET", "/v1/tenants/borrower").body;
  EXPECT_EQ(b["state"], "running");
  EXPECT_LE(b["memory"]["used"].get<uint64_t>(), 10 * kGiB);
  EXPECT_EQ(kill(member, 0), 0);  // it gave the memory back and keeps running
  EXPECT_EQ(Committed(0), 40 * kGiB);
}

// An attach-only tenant outlives the processes a reclaim kills (no release_on_exit), and new ones
// can join it and borrow again. The next reclaim must kill those too: "already killed" is about
// the processes of one reclaim, not about the tenant. It used to be skipped for good, so its
// borrowed memory was never taken back and the request that needed it was refused.
TEST_F(NodeBurstTest, AnAttachOnlyBorrowerIsReclaimedEachTimeItBorrows) {
  StartAgent("burst_reclaim_deadline: 300ms\n");
  json t = Create({{"name", "borrower"}, {"memory", "10GiB"}, {"memory_limit", "80GiB"}});
  const std::string token = t["token"].get<std::string>();
  for (const char* needs : {"first", "second"}) {
    SCOPED_TRACE(needs);
    // No burst_signal: the member cannot be told, so the reclaim kills it at once.
    const pid_t member = StartProcess({Gpufrac(), "run", "--node", socket_, "--token", token, "--",
                                       Probe(), "hold", "alloc", "60GiB"},
                                      SimEnv(), TempDir() + "/member.out");
    tenant_pids_.push_back(member);
    WaitTenant("borrower", [](const json& b) { return b["memory"]["used"] >= 60 * kGiB; });
    // 30 GiB is not free (19.5 GiB is): the borrower's burst must go.
    ApiReply r =
        Call("POST", "/v1/tenants",
             json({{"name", needs}, {"memory", "30GiB"}, {"command", {"sleep", "30"}}}).dump());
    ASSERT_EQ(r.status, 201) << r.raw;
    tenant_pids_.push_back(r.body["pid"].get<pid_t>());
    EXPECT_EQ(WaitProcess(member, std::chrono::seconds(10)), 128 + SIGKILL);
    json b = Call("GET", "/v1/tenants/borrower").body;
    EXPECT_EQ(b["state"], "running");
    EXPECT_LE(b["memory"]["used"].get<uint64_t>(), 10 * kGiB);
    // Room for the next round to borrow the same memory again.
    EXPECT_EQ(Call("DELETE", std::string("/v1/tenants/") + needs).status, 200);
  }
}

// A request that would be refused anyway (invalid, or its compute guarantee does not fit) never
// costs a borrower its memory: it is refused before any reclaim starts.
TEST_F(NodeBurstTest, ARequestRefusedForAnotherReasonKillsNoBorrower) {
  StartAgent("burst_reclaim_deadline: 300ms\n");
  Create({{"name", "hog"},
          {"memory", "10GiB"},
          {"memory_limit", "80GiB"},
          {"command", {Probe(), "hold", "alloc", "60GiB"}}});
  WaitTenant("hog", [](const json& b) { return b["memory"]["used"] >= 60 * kGiB; });
  const json sleep = {"sleep", "30"};
  // 30 GiB would need a reclaim, but the compute limit is below the compute request: 400.
  ApiReply r = Call("POST", "/v1/tenants",
                    json({{"name", "bad"},
                          {"memory", "30GiB"},
                          {"compute", 0.9},
                          {"compute_limit", 0.1},
                          {"command", sleep}})
                        .dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["message"], "compute_limit: 0.100 is below the compute request 0.900");
  // The default compute request follows memory (30 of 80 GiB): 0.375, above this limit.
  r = Call("POST", "/v1/tenants",
           json({{"name", "bad"}, {"memory", "30GiB"}, {"compute_limit", 0.1}, {"command", sleep}})
               .dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["message"], "compute_limit: 0.100 is below the compute request 0.375");
  // Valid, but its compute guarantee does not fit beside the others (0.125 + 0.8 taken): 409.
  Create({{"name", "busy"}, {"memory", "1GiB"}, {"compute", 0.8}, {"command", sleep}});
  r = Call(
      "POST", "/v1/tenants",
      json({{"name", "late"}, {"memory", "30GiB"}, {"compute", 0.5}, {"command", sleep}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_NE(r.raw.find("does not fit: GPU 0: asked 30.0GiB, free 18.5GiB"), std::string::npos)
      << r.raw;
  // With the memory there, compute is what it says.
  r = Call(
      "POST", "/v1/tenants",
      json({{"name", "late"}, {"memory", "1GiB"}, {"compute", 0.5}, {"command", sleep}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(r.body["error"]["message"],
            "does not fit: GPU 0: compute asked 0.500, 0.075 of the GPU not yet guaranteed");
  // The borrower was never notified, let alone killed.
  EXPECT_EQ(Call("GET", "/v1/tenants/hog").body["state"], "running");
  EXPECT_EQ(ReadFile(agent_log_).find("burst_notified"), std::string::npos);
  EXPECT_GE(Call("GET", "/v1/tenants/hog").body["memory"]["used"].get<uint64_t>(), 60 * kGiB);
}

// A borrower nobody can tell (no burst_signal, or only a burst_hook that does not answer) gets no
// notice, so waiting out the deadline for it only delays the request that needs its memory: it is
// killed at once, and logged as reclaimed without notice, not as notified. It used to be logged
// "burst_notified ... signal=none hook=none" and killed only at the deadline.
TEST_F(NodeBurstTest, BorrowersThatCannotBeToldAreReclaimedAtOnce) {
  StartAgent("burst_reclaim_deadline: 20s\n");
  // Port 1 (tcpmux) is privileged and nothing listens on it, so the hook is refused at once. A
  // FreePort() could be bound by a test running beside this one; the hook call would then wait
  // for an answer until the deadline, and the time check below would fail for no fault here.
  const std::string deaf_hook = "http://127.0.0.1:1/reclaim";
  Create({{"name", "mute"},
          {"memory", "5GiB"},
          {"memory_limit", "80GiB"},
          {"command", {Probe(), "hold", "alloc", "30GiB"}}});
  WaitTenant("mute", [](const json& b) { return b["memory"]["used"] >= 30 * kGiB; });
  Create({{"name", "deaf"},
          {"memory", "5GiB"},
          {"memory_limit", "80GiB"},
          {"burst_hook", deaf_hook},
          {"command", {Probe(), "hold", "alloc", "30GiB"}}});
  WaitTenant("deaf", [](const json& b) { return b["memory"]["used"] >= 30 * kGiB; });
  // 60 GiB needs both bursts back (19 GiB are free).
  const auto start = std::chrono::steady_clock::now();
  json t = Create({{"name", "needs"}, {"memory", "60GiB"}, {"command", {"sleep", "30"}}});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(t["gpu"], 0);
  EXPECT_LT(took, std::chrono::seconds(10)) << "waited for borrowers that were never told";
  for (const char* id : {"mute", "deaf"}) {
    json dead = WaitTenant(id, [](const json& b) { return b["state"] == "exited"; });
    EXPECT_EQ(dead["exit_status"], 128 + SIGKILL) << id;
    EXPECT_NE(dead["reason"].get<std::string>().find("kept borrowed memory"), std::string::npos)
        << dead.dump();
  }
  const std::string log = ReadFile(agent_log_);
  EXPECT_EQ(log.find("burst_notified"), std::string::npos) << log;
  EXPECT_NE(log.find("event=tenant.burst_reclaiming id=mute gpu=0 reason=\"no burst_signal or "
                     "burst_hook to notify\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.burst_hook_failed id=deaf hook=" + deaf_hook), std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.burst_reclaiming id=deaf gpu=0 reason=\"its burst_hook failed "
                     "and it has no burst_signal\""),
            std::string::npos)
      << log;
  EXPECT_EQ(Committed(0), 60 * kGiB);
}

// When some victims were told and others could not be, only the told get the deadline: the untold
// one is killed at once, the told one gives its burst back and keeps running, and the request is
// admitted without waiting the deadline out.
TEST_F(NodeBurstTest, OnlyTheBorrowersThatWereToldAreWaitedFor) {
  StartAgent("burst_reclaim_deadline: 20s\n");
  const std::string script = Probe() +
                             " hold alloc 30GiB & c=$!; trap 'kill $c' USR1; wait $c; "
                             "while :; do sleep 0.1; done";
  Create({{"name", "polite"},
          {"memory", "5GiB"},
          {"memory_limit", "80GiB"},
          {"burst_signal", "SIGUSR1"},
          {"command", {"sh", "-c", script}}});
  WaitTenant("polite", [](const json& b) { return b["memory"]["used"] >= 30 * kGiB; });
  Create({{"name", "mute"},
          {"memory", "5GiB"},
          {"memory_limit", "80GiB"},
          {"command", {Probe(), "hold", "alloc", "30GiB"}}});
  WaitTenant("mute", [](const json& b) { return b["memory"]["used"] >= 30 * kGiB; });
  const auto start = std::chrono::steady_clock::now();
  json t = Create({{"name", "needs"}, {"memory", "60GiB"}, {"command", {"sleep", "30"}}});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(t["gpu"], 0);
  EXPECT_LT(took, std::chrono::seconds(10)) << "waited the deadline for a borrower never told";
  json polite = Call("GET", "/v1/tenants/polite").body;
  EXPECT_EQ(polite["state"], "running");
  EXPECT_LE(polite["memory"]["used"].get<uint64_t>(), 5 * kGiB);
  json mute = WaitTenant("mute", [](const json& b) { return b["state"] == "exited"; });
  EXPECT_EQ(mute["exit_status"], 128 + SIGKILL);
  const std::string log = ReadFile(agent_log_);
  EXPECT_NE(log.find("event=tenant.burst_notified id=polite gpu=0 signal=10 hook=none"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.burst_reclaiming id=mute"), std::string::npos) << log;
  EXPECT_EQ(log.find("event=tenant.burst_notified id=mute"), std::string::npos) << log;
  EXPECT_EQ(Committed(0), 65 * kGiB);
}

}  // namespace
}  // namespace gpufrac::testing
