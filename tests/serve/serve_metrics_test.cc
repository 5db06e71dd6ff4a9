// The per-replica queue figures on /metrics, end to end: a replica's pending requests (dispatched,
// no content event yet) and the gateway-queue wait of the requests sent to it.
#include <gtest/gtest.h>

#include <thread>

#include "serve_test_support.h"

namespace gpufrac::testing {
namespace {

class ServeMetricsTest : public ServeFixture {};

// A replica with a long TTFT and a limit of 3 in flight: 5 streams make 3 wait for their first
// token on the replica while 2 wait in the gateway's queue, then those 2 on the replica.
TEST_F(ServeMetricsTest, ReplicaPendingAndQueueWaitFollowTheStreams) {
  StartAgent();
  StartServe(
      "models:\n  - name: chat\n    command: " + Synth({"--ttft-ms", "3000", "--itl-ms", "300"}) +
      "\n    health: {interval: 200ms}\n    gpu: {memory: \"0.1\"}\n"
      "    min_replicas: 1\n    max_replicas: 1\n    sla: {ttft_p95: 10s}\n"
      "    admission: {max_inflight_per_replica: 3, max_queue: 8, queue_timeout: 30s}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  const std::string replica =
      "{model=\"chat\",replica=\"sv" + std::to_string(serve_) + "-chat-1\"}";
  auto pending = [&] { return Metric("gpufrac_serve_replica_pending_requests" + replica); };
  auto in_flight = [&] { return Metric("gpufrac_serve_replica_in_flight" + replica); };
  auto queued = [&] { return Metric("gpufrac_serve_queue_depth{model=\"chat\"}"); };
  EXPECT_EQ(pending(), 0);

  std::vector<HttpReply> replies(5);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < replies.size(); ++i) {
    clients.emplace_back([&, i] {
      // 5 content events: first after 3 s, then 4 gaps of 300 ms.
      replies[i] = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 5));
    });
  }
  // 3 streams on the replica, none with a token yet (the role-only chunk does not count).
  EXPECT_TRUE(WaitFor([&] { return pending() == 3 && in_flight() == 3 && queued() == 2; }, 2800));
  // Their first tokens came: still in flight, no longer pending; the 2 others still queued.
  EXPECT_TRUE(WaitFor([&] { return pending() == 0 && in_flight() == 3 && queued() == 2; }, 5000));
  // The first 3 ended: the 2 queued ones wait on the replica for their first token.
  EXPECT_TRUE(WaitFor([&] { return pending() == 2 && in_flight() == 2 && queued() == 0; }, 5000));
  for (auto& t : clients) t.join();
  for (const HttpReply& r : replies) {
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.body.find("[DONE]"), std::string::npos);
  }
  EXPECT_TRUE(WaitFor([&] { return in_flight() == 0; }, 2000));
  EXPECT_EQ(pending(), 0);

  // Every request sent to the replica has a queue wait: 0 for the 3 sent at once; the 2 queued
  // ones waited for a slot: at least the 3 s TTFT of the streams ahead of them.
  const std::string wait = "gpufrac_serve_replica_queue_wait_seconds";
  const std::string labels = replica.substr(0, replica.size() - 1);
  EXPECT_EQ(Metric(wait + "_count" + replica), 5);
  EXPECT_EQ(Metric(wait + "_bucket" + labels + ",le=\"0.001\"}"), 3);
  EXPECT_GT(Metric(wait + "_sum" + replica), 2 * 3.0);
  EXPECT_EQ(Metric(wait + "_bucket" + labels + ",le=\"+Inf\"}"), 5);
}

}  // namespace
}  // namespace gpufrac::testing
