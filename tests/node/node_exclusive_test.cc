// One agent per state and socket: a second `gpufrac node` is refused before it touches anything,
// and a start that fails on its listeners adopts nothing. Before, a refused second agent adopted
// the live agent's tenants into its own (soon dead) pid; the live agent then reaped their ledger
// entries while they ran, and their memory was handed out twice.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "node_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class NodeExclusiveTest : public NodeFixture {
 protected:
  // Runs a second agent to its end (it should be refused at once) and returns its result.
  ProcessResult RunSecondAgent(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Gpufrac(), "node"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, SimEnv(), std::chrono::seconds(20));
  }
  // A few reaper passes of the live agent, which is when a wrongly adopted tenant would go.
  void LetTheReaperRun() { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); }
};

TEST_F(NodeExclusiveTest, ASecondAgentOnTheSameSocketOrStateIsRefusedAndAdoptsNothing) {
  StartAgent();
  Create({{"name", "held"}, {"memory", "60GiB"}, {"command", {"sleep", "60"}}});
  const std::string config = TempDir() + "/node.yaml";

  ProcessResult same = RunSecondAgent({"--config", config});
  EXPECT_EQ(same.exit_code, 1) << same.err;
  EXPECT_NE(same.err.find("another agent is using the state '" + state_ + "'"), std::string::npos)
      << same.err;
  EXPECT_EQ(same.err.find("tenant.adopted"), std::string::npos) << same.err;

  // Same state behind another socket: still the live agent's tenants.
  ProcessResult other_socket =
      RunSecondAgent({"--config", config, "--socket", TempDir() + "/other.sock"});
  EXPECT_EQ(other_socket.exit_code, 1) << other_socket.err;
  EXPECT_NE(other_socket.err.find("another agent is using the state"), std::string::npos)
      << other_socket.err;
  EXPECT_EQ(other_socket.err.find("tenant.adopted"), std::string::npos) << other_socket.err;

  // Same socket, another state: refused on the socket, which stays the live agent's.
  ProcessResult other_state =
      RunSecondAgent({"--config", config, "--state", TempDir() + "/other.db"});
  EXPECT_EQ(other_state.exit_code, 1) << other_state.err;
  EXPECT_NE(other_state.err.find("another agent is serving on '" + socket_ + "'"),
            std::string::npos)
      << other_state.err;

  LetTheReaperRun();
  json held = Call("GET", "/v1/tenants/held").body;
  EXPECT_EQ(held["state"], "running") << held;
  EXPECT_EQ(Committed(0), 60 * kGiB);
  ApiReply second =
      Call("POST", "/v1/tenants",
           json({{"name", "second"}, {"memory", "60GiB"}, {"command", {"sleep", "60"}}}).dump());
  EXPECT_EQ(second.status, 409) << second.raw;
}

TEST_F(NodeExclusiveTest, AStartThatCannotListenOnTcpAdoptsNothing) {
  StartAgent();
  json held = Create({{"name", "held"}, {"memory", "60GiB"}, {"command", {"sleep", "60"}}});
  KillAgent(SIGKILL);  // the tenant runs on, waiting to be adopted

  // A port already taken: the start fails when it listens, which must come before adopting.
  int port = 0;
  const int busy = ListenOnLoopback(&port);
  ASSERT_GE(busy, 0);
  const std::string token = TempDir() + "/token";
  std::ofstream(token) << "secret\n";
  const std::string config = TempDir() + "/tcp.yaml";
  std::ofstream(config) << ReadFile(TempDir() + "/node.yaml")
                        << "\ntcp:\n  address: 127.0.0.1:" << port << "\n  token_file: " << token
                        << "\n";
  ProcessResult failed = RunSecondAgent({"--config", config});
  close(busy);
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_NE(failed.err.find("cannot listen on 127.0.0.1:"), std::string::npos) << failed.err;
  EXPECT_EQ(failed.err.find("tenant.adopted"), std::string::npos) << failed.err;
  // Its socket is not left behind, and the next agent adopts the tenant as usual.
  StartAgent();
  json adopted = Call("GET", "/v1/tenants/held").body;
  EXPECT_EQ(adopted["state"], "running") << adopted;
  EXPECT_EQ(adopted["adopted"], true);
  EXPECT_EQ(Committed(0), 60 * kGiB);
}

}  // namespace
}  // namespace gpufrac::testing
