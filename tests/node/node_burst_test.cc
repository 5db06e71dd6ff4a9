// Memory-burst reclaim with the real agent: a tenant bursting above its request into memory nobody
// was promised is notified (its burst_signal) when a new request needs that memory, and killed if
// it has not given it back by the deadline.
#include <gtest/gtest.h>

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
  json hog = Create({{"name", "hog"},
                     {"memory", "10GiB"},
                     {"memory_limit", "80GiB"},
                     {"command", {Probe(), "hold", "alloc", "60GiB"}}});
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
  // When even reclaiming every burst would not make room, nothing is killed and the answer is 409.
  ApiReply r =
      Call("POST", "/v1/tenants",
           json({{"name", "x"}, {"memory", "50GiB"}, {"command", {"sleep", "30"}}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(Call("GET", "/v1/tenants/modest").body["state"], "running");
}

}  // namespace
}  // namespace gpufrac::testing
