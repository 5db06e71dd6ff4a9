// Autoscaling end to end: a load ramp with `gpufrac bench` scales a model out with no failed
// request and the TTFT p95 of every 10 s window under 1.5x the SLA; the load drops and it scales
// back in with no lost request; a scale-to-zero model holds requests during its cold start.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <thread>

#include "serve_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class ServeScalingTest : public ServeFixture {};

double P95(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double rank = 0.95 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

TEST_F(ServeScalingTest, RampScalesOutThenInWithoutAFailedRequest) {
  StartAgent();
  // TTFT grows by 15 ms for every other stream a replica serves: one replica cannot hold the SLA
  // for 12 users, four can.
  StartServe("models:\n  - name: chat\n    command: " +
             Synth({"--model", "{model}", "--ttft-ms", "30", "--itl-ms", "5",
                    "--slowdown-ms-per-stream", "15"}) +
             "\n    health: {interval: 200ms}\n    gpu: {memory: \"0.2\"}\n"
             "    min_replicas: 1\n    max_replicas: 4\n    drain_grace: 20s\n"
             "    sla: {ttft_p95: 400ms, inflight_per_replica: 3}\n"
             "    admission: {max_inflight_per_replica: 8, max_queue: 500, queue_timeout: 30s}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  const std::string out = TempDir() + "/bench";
  ProcessResult bench = RunProcess(
      {Gpufrac(), "bench", "--url", "http://127.0.0.1:" + std::to_string(port_), "--model", "chat",
       "--concurrency", "1,4,12,2", "--duration", "5s", "--output-tokens-mean", "20",
       "--input-tokens-mean", "32", "--output-dir", out, "--no-progress"},
      {}, std::chrono::seconds(120));
  ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
  // Every request succeeded; TTFT p95 per 10 s window of start times.
  std::ifstream lines(out + "/requests.jsonl");
  std::map<int64_t, std::vector<double>> windows;
  int64_t first_start = -1;
  int requests = 0;
  std::vector<json> records;
  for (std::string line; std::getline(lines, line);) records.push_back(json::parse(line));
  for (const json& r : records) {
    first_start = first_start < 0 ? r["start_ns"].get<int64_t>()
                                  : std::min(first_start, r["start_ns"].get<int64_t>());
  }
  for (const json& r : records) {
    ++requests;
    EXPECT_EQ(r["error"], "none") << r.dump();
    EXPECT_EQ(r["http_status"], 200);
    windows[(r["start_ns"].get<int64_t>() - first_start) / 10'000'000'000].push_back(
        r["ttft_ms"].get<double>());
  }
  EXPECT_GT(requests, 200);
  for (const auto& [w, ttfts] : windows) {
    if (ttfts.size() < 20) continue;  // a tail window too small for a p95
    EXPECT_LT(P95(ttfts), 1.5 * 400) << "window " << w << " of " << ttfts.size() << " requests";
  }
  const std::string log = ServeLog();
  EXPECT_NE(log.find("event=autoscaler.decision model=chat from=1"), std::string::npos) << log;
  EXPECT_GE(Metric("gpufrac_serve_scale_decisions_total{model=\"chat\",direction=\"out\"}"), 1);
  // The peak needed more than two replicas; then the load dropped and they were drained.
  EXPECT_NE(log.find("direction=out"), std::string::npos);
  EXPECT_TRUE(log.find("to=3 ") != std::string::npos || log.find("to=4 ") != std::string::npos)
      << log;
  ASSERT_TRUE(WaitReplicas(
      "chat", [](int n) { return n == 1; }, 30000))
      << ServeLog();
  const std::string after = ServeLog();
  EXPECT_NE(after.find("event=replica.draining model=chat"), std::string::npos);
  EXPECT_NE(after.find("event=replica.stopped model=chat"), std::string::npos);
  EXPECT_EQ(after.find("event=replica.failed"), std::string::npos) << after;
  // No request was ever sent to a replica that could not take it (one not yet listening, or
  // stopped): that would have marked it suspect or counted a failed connect, even when retried.
  EXPECT_EQ(after.find("event=replica.suspect"), std::string::npos) << after;
  EXPECT_EQ(Metric("gpufrac_serve_errors_total{model=\"chat\",kind=\"upstream_connect\"}"), -1);
  EXPECT_EQ(Metric("gpufrac_serve_errors_total{model=\"chat\",kind=\"upstream_failed\"}"), -1);
  // Scaled-in replicas' tenants are gone from the agent.
  EXPECT_TRUE(WaitFor([&] { return TenantPids("chat").size() == 1; }, 10000));
  EXPECT_EQ(StopServe(), 0);
  EXPECT_TRUE(TenantPids("").empty());
}

TEST_F(ServeScalingTest, ScaleToZeroHoldsRequestsDuringColdStartAndRefusesBeyondTheQueue) {
  StartAgent();
  StartServe("models:\n  - name: embed\n    command: " + Synth({"--model", "{model}"}) +
             "\n    gpu: {memory: 1GiB}\n    min_replicas: 0\n    max_replicas: 1\n"
             "    sla: {ttft_p95: 1s}\n    scale_to_zero: {idle: 1s, hold: 10s}\n"
             "    admission: {max_inflight_per_replica: 8, max_queue: 3, queue_timeout: 5s}\n");
  json h = Health();
  EXPECT_EQ(h["models"]["embed"]["ready"], 0);
  EXPECT_EQ(h["models"]["embed"]["desired"], 0);
  EXPECT_TRUE(TenantPids("embed").empty());
  const std::string body = R"({"model": "embed", "input": "hello world"})";
  std::vector<HttpReply> replies(6);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < replies.size(); ++i) {
    clients.emplace_back(
        [&, i] { replies[i] = HttpRequest(port_, "POST", "/v1/embeddings", body); });
  }
  for (auto& t : clients) t.join();
  int ok = 0, refused = 0;
  for (const HttpReply& r : replies) {
    if (r.status == 200) {
      ++ok;
      EXPECT_NE(r.body.find("\"embedding\""), std::string::npos) << r.body;
    } else {
      ++refused;
      EXPECT_EQ(r.status, 503) << r.body;
      EXPECT_EQ(r.Header("retry-after"), "1");
      EXPECT_NE(r.body.find("scaling from zero"), std::string::npos) << r.body;
      EXPECT_LT(r.ms, 1000) << "a refusal must be immediate";
    }
  }
  EXPECT_EQ(ok, 3);  // the hold queue
  EXPECT_EQ(refused, 3);
  EXPECT_NE(ServeLog().find("reason=\"cold start"), std::string::npos);
  // Idle for 1 s: back to zero, its tenant deleted.
  ASSERT_TRUE(WaitFor([&] { return Health()["models"]["embed"]["desired"] == 0; }, 10000));
  EXPECT_TRUE(WaitFor([&] { return TenantPids("embed").empty(); }, 10000));
  EXPECT_NE(ServeLog().find("scale to zero"), std::string::npos);
  // And up again for the next request.
  HttpReply again = HttpRequest(port_, "POST", "/v1/embeddings", body);
  EXPECT_EQ(again.status, 200) << again.body;
}

TEST_F(ServeScalingTest, ScaleInDrainsTheStreamsInFlightOnTheReplicaItRemoves) {
  StartAgent();
  auto deploy = [&](int replicas) {
    const std::string n = std::to_string(replicas);
    return "models:\n  - name: chat\n    command: " +
           Synth({"--ttft-ms", "50", "--itl-ms", "100"}) +
           "\n    health: {interval: 200ms}\n    gpu: {memory: \"0.1\"}\n    min_replicas: " + n +
           "\n    max_replicas: " + n + "\n    sla: {ttft_p95: 5s}\n";
  };
  StartServe(deploy(2));
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 2; }));
  // Four 3-second streams, two on each replica (least outstanding requests).
  std::vector<HttpReply> replies(4);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < replies.size(); ++i) {
    clients.emplace_back([&, i] {
      replies[i] = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 30));
    });
  }
  ASSERT_TRUE(WaitFor([&] { return Health()["models"]["chat"]["in_flight"] == 4; }, 5000));
  // One replica fewer, same replica spec: one is drained while its two streams are mid-way.
  WriteDeploy(deploy(1));
  kill(serve_, SIGHUP);
  ASSERT_TRUE(
      WaitFor([&] { return ServeLog().find("event=replica.draining") != std::string::npos; }, 5000))
      << ServeLog();
  for (auto& t : clients) t.join();
  for (const HttpReply& r : replies) {
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.complete);
    EXPECT_NE(r.body.find("[DONE]"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("\"error\""), std::string::npos) << r.body;
  }
  ASSERT_TRUE(
      WaitFor([&] { return ServeLog().find("event=replica.stopped") != std::string::npos; }, 10000))
      << ServeLog();
  const std::string log = ServeLog();
  // It was drained with streams in flight, and stopped only once they had finished.
  const size_t draining = log.find("event=replica.draining");
  const std::string draining_line = log.substr(draining, log.find('\n', draining) - draining);
  EXPECT_NE(draining_line.find("in_flight=2"), std::string::npos) << draining_line;
  const size_t stopping = log.find("event=replica.stopping");
  ASSERT_NE(stopping, std::string::npos) << log;
  EXPECT_GT(stopping, draining);
  const std::string stopping_line = log.substr(stopping, log.find('\n', stopping) - stopping);
  EXPECT_NE(stopping_line.find("in_flight=0"), std::string::npos) << stopping_line;
  EXPECT_EQ(Health()["models"]["chat"]["ready"], 1);
}

}  // namespace
}  // namespace gpufrac::testing
