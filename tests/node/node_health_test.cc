// GPU health from NVML: unhealthy cards are reported and get no new tenants.
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

class NodeHealthTest : public NodeFixture {};

// GPU health from NVML: a card with uncorrected memory errors (the simulated NVML reports them
// from GPUFRAC_SIM_ECC_ERRORS) is reported unhealthy, in the log, the API, /metrics and top, and
// gets no new tenant: spread skips it, and asking for it explicitly is refused with the reason.
TEST_F(NodeHealthTest, AnUnhealthyGpuIsReportedAndGetsNoNewTenants) {
  devices_ = "H100:80GiB,H100:80GiB";
  StartAgent("", {{"GPUFRAC_SIM_ECC_ERRORS", "0:2"}});
  json gpus = Call("GET", "/v1/gpus").body["gpus"];
  EXPECT_EQ(gpus[0]["health"], "unhealthy: 2 uncorrected ECC errors since the driver loaded");
  EXPECT_EQ(gpus[1]["health"], "ok");
  // The SM count comes from the CUDA driver (the simulated H100 has 132).
  EXPECT_EQ(gpus[0]["sm_count"], 132);
  EXPECT_NE(ReadFile(agent_log_)
                .find("event=gpu.discovered gpu=1 uuid=" + Uuid(1) +
                      " name=\"NVIDIA H100 (simulated)\" memory=80.0GiB "
                      "sm_count=132"),
            std::string::npos);
  // GPU 0 would be the bin-pack and spread choice among two empty cards; it is skipped.
  EXPECT_EQ(Create({{"name", "a"}, {"memory", "10GiB"}, {"command", {"sleep", "30"}}})["gpu"], 1);
  ApiReply r = Call(
      "POST", "/v1/tenants",
      json({{"name", "b"}, {"memory", "10GiB"}, {"gpu", 0}, {"command", {"sleep", "30"}}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(r.body["error"]["message"],
            "does not fit: GPU 0: unhealthy (2 uncorrected ECC errors since the driver loaded)");
  r = Call("POST", "/v1/tenants",
           json({{"name", "c"}, {"memory", "75GiB"}, {"command", {"sleep", "30"}}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_NE(r.raw.find("GPU 0: unhealthy (2 uncorrected ECC errors since the driver loaded); GPU "
                       "1: asked 75.0GiB, free 70.0GiB of 80.0GiB"),
            std::string::npos)
      << r.raw;
  const std::string metrics = Call("GET", "/metrics").raw;
  EXPECT_NE(metrics.find("gpufrac_gpu_healthy{gpu=\"0\",uuid=\"" + Uuid(0) + "\"} 0\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("gpufrac_gpu_healthy{gpu=\"1\",uuid=\"" + Uuid(1) + "\"} 1\n"),
            std::string::npos);
  EXPECT_NE(ReadFile(agent_log_)
                .find("event=gpu.unhealthy gpu=0 uuid=" + Uuid(0) +
                      " reason=\"2 uncorrected ECC errors since the driver "
                      "loaded\""),
            std::string::npos)
      << ReadFile(agent_log_);
  ProcessResult top = RunGpufrac({"top", "--once", "--node", socket_});
  EXPECT_NE(top.out.find("unhealthy: 2 uncorrected ECC errors"), std::string::npos) << top.out;
}

}  // namespace
}  // namespace gpufrac::testing
