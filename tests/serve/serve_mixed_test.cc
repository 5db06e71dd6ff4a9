// Several models on shared simulated GPUs: chat and embeddings routed and scaled each on its own;
// batch replicas preempted (through the agent) when an inference model needs room, never the
// reverse.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "serve_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class ServeMixedTest : public ServeFixture {};

TEST_F(ServeMixedTest, ChatAndEmbeddingsAreRoutedAndScaledEachOnItsOwn) {
  StartAgent();  // one simulated H100 shared by both models
  StartServe("models:\n  - name: chat\n    command: " +
             Synth({"--model", "{model}", "--ttft-ms", "20", "--itl-ms", "5",
                    "--slowdown-ms-per-stream", "10"}) +
             "\n    health: {interval: 200ms}\n    gpu: {memory: \"0.2\", compute: 0.2}\n"
             "    min_replicas: 1\n    max_replicas: 3\n"
             "    sla: {ttft_p95: 500ms, inflight_per_replica: 2}\n"
             "  - name: embed\n    command: " +
             Synth({"--model", "{model}", "--ttft-ms", "2"}) +
             "\n    health: {interval: 200ms}\n    gpu: {memory: 8GiB}\n"
             "    min_replicas: 1\n    max_replicas: 3\n"
             "    sla: {ttft_p95: 500ms, inflight_per_replica: 4}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  ASSERT_TRUE(WaitReplicas("embed", [](int n) { return n == 1; }));
  const std::string workload = TempDir() + "/mixed.yaml";
  std::ofstream(workload) << "url: http://127.0.0.1:" << port_ << "\nduration: 5s\nworkloads:\n"
                          << "  - {name: chat, model: chat, concurrency: 8, output_tokens: 20}\n"
                          << "  - {name: embed, model: embed, endpoint: embeddings, rate: 20}\n";
  ProcessResult bench =
      RunProcess({Gpufrac(), "bench", "--workload", workload, "--json", "--no-progress"}, {},
                 std::chrono::seconds(60));
  ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
  json summary = json::parse(bench.out);
  EXPECT_EQ(summary["requests"]["failed"], 0) << bench.out;
  ASSERT_TRUE(summary["workloads"].is_object() || summary["workloads"].is_array()) << bench.out;
  // Chat needed more replicas (8 users, 2 each); embeddings (about 0.1 in flight) did not.
  EXPECT_GE(Health()["models"]["chat"]["desired"].get<int>(), 2);
  EXPECT_EQ(Health()["models"]["embed"]["desired"], 1);
  EXPECT_GE(Metric("gpufrac_serve_requests_total{model=\"embed\"}"), 80);
  EXPECT_GE(Metric("gpufrac_serve_requests_total{model=\"chat\"}"), 80);
  // A whole (non-streamed) answer counts as its first token, so the embedding model's SLA has
  // samples to act on.
  EXPECT_GE(Metric("gpufrac_serve_ttft_seconds_count{model=\"embed\"}"), 80);
  EXPECT_GE(Metric("gpufrac_serve_ttft_p95_seconds{model=\"embed\"}"), 0);
  // Measured per replica too.
  const std::string first = "{model=\"chat\",replica=\"sv" + std::to_string(serve_) + "-chat-1\"}";
  EXPECT_GT(Metric("gpufrac_serve_replica_ttft_seconds_count" + first), 10);
  EXPECT_GT(Metric("gpufrac_serve_replica_itl_seconds_count" + first), 100);
  EXPECT_GT(Metric("gpufrac_serve_replica_requests_total" + first), 10);
  // Each model's requests went to its own replicas, which answer with their model's name.
  HttpReply chat = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 2));
  EXPECT_NE(chat.Header("x-gpufrac-replica").find("-chat-"), std::string::npos);
  EXPECT_NE(chat.body.find("\"model\":\"chat\""), std::string::npos) << chat.body;
  HttpReply embed =
      HttpRequest(port_, "POST", "/v1/embeddings", R"({"model": "embed", "input": "x"})");
  EXPECT_EQ(embed.status, 200);
  EXPECT_NE(embed.Header("x-gpufrac-replica").find("-embed-"), std::string::npos);
  EXPECT_NE(embed.body.find("\"embedding\""), std::string::npos) << embed.body;
  // Both are tenants of the same GPU, each with its own share.
  ApiReply tenants = Call("GET", "/v1/tenants");
  int chat_tenants = 0, embed_tenants = 0;
  for (const json& t : tenants.body["tenants"]) {
    const std::string id = t["id"];
    EXPECT_EQ(t["gpu"], 0);
    if (id.find("-chat-") != std::string::npos && t["state"] == "running") {
      ++chat_tenants;
      EXPECT_EQ(t["memory"]["request"], 16 * kGiB);  // 0.2 of 80 GiB
      EXPECT_DOUBLE_EQ(t["compute"]["request"].get<double>(), 0.2);
    }
    if (id.find("-embed-") != std::string::npos && t["state"] == "running") {
      ++embed_tenants;
      EXPECT_EQ(t["memory"]["request"], 8 * kGiB);
    }
  }
  EXPECT_GE(chat_tenants, 2);
  EXPECT_EQ(embed_tenants, 1);
}

TEST_F(ServeMixedTest, BatchReplicasArePreemptedForInferenceNeverTheReverse) {
  StartAgent();  // one 80 GiB GPU
  // Someone else's batch job on the host, older than the gateway's batch replica.
  Create(
      {{"name", "etl"}, {"memory", "0.25"}, {"priority", "batch"}, {"command", {"sleep", "600"}}});
  // chat (inference, 0.25) + trainer (batch, 0.5) + etl (batch, 0.25): the GPU is full.
  StartServe("models:\n  - name: chat\n    command: " +
                 Synth({"--model", "{model}", "--ttft-ms", "20", "--itl-ms", "10"}) +
                 "\n    health: {interval: 200ms}\n    gpu: {memory: \"0.25\"}\n"
                 "    min_replicas: 1\n    max_replicas: 2\n"
                 "    sla: {ttft_p95: 2s, inflight_per_replica: 2}\n"
                 "  - name: trainer\n    command: " +
                 Synth({"--model", "{model}"}) +
                 "\n    gpu: {memory: \"0.5\", priority: batch}\n"
                 "    min_replicas: 1\n    max_replicas: 1\n    sla: {ttft_p95: 10s}\n",
             "", "preemption: {enabled: true, grace: 500ms}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  ASSERT_TRUE(WaitReplicas("trainer", [](int n) { return n == 1; }));
  EXPECT_EQ(Committed(0), 80 * kGiB);
  // Load on chat: it needs a second replica, which fits only if a batch tenant goes. The
  // youngest batch tenant is the trainer replica.
  ProcessResult bench =
      RunProcess({Gpufrac(), "bench", "--url", "http://127.0.0.1:" + std::to_string(port_),
                  "--model", "chat", "--concurrency", "6", "--duration", "4s",
                  "--output-tokens-mean", "20", "--json", "--no-progress"},
                 {}, std::chrono::seconds(60));
  ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
  EXPECT_EQ(json::parse(bench.out)["requests"]["failed"], 0);
  ASSERT_TRUE(WaitReplicas(
      "chat", [](int n) { return n == 2; }, 10000))
      << ServeLog();
  const std::string log = ServeLog();
  EXPECT_NE(log.find("event=preemption model=chat"), std::string::npos) << log;
  EXPECT_NE(log.find("-trainer-1 policy="), std::string::npos) << log;
  EXPECT_EQ(Metric("gpufrac_serve_preemptions_total{model=\"chat\"}"), 1);
  // The older batch tenant was not needed and kept running.
  EXPECT_EQ(Call("GET", "/v1/tenants/etl").body["state"], "running");
  // The trainer tries to come back but never preempts anything: chat keeps both replicas.
  EXPECT_TRUE(WaitFor(
      [&] {
        return ServeLog().find("event=replica.start_failed model=trainer") != std::string::npos;
      },
      10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Health()["models"]["chat"]["ready"], 2);
  EXPECT_EQ(Health()["models"]["trainer"]["ready"], 0);
  EXPECT_EQ(ServeLog().find("event=replica.failed model=chat"), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/tenants/etl").body["state"], "running");
}

TEST_F(ServeMixedTest, PreemptionPicksTheGpuWhereDeletingBatchWorkMakesRoom) {
  devices_ = "H100:80GiB,H100:80GiB";
  StartAgent();
  // GPU 0: inference 0.75; GPU 1: batch 0.5. Then chat's first replica (0.5) fills GPU 1.
  Create({{"name", "inf0"}, {"memory", "0.75"}, {"gpu", 0}, {"command", {"sleep", "600"}}});
  Create({{"name", "b1"},
          {"memory", "0.5"},
          {"gpu", 1},
          {"priority", "batch"},
          {"command", {"sleep", "600"}}});
  StartServe("models:\n  - name: chat\n    command: " +
                 Synth({"--model", "{model}", "--ttft-ms", "20", "--itl-ms", "10"}) +
                 "\n    health: {interval: 200ms}\n    gpu: {memory: \"0.5\"}\n"
                 "    min_replicas: 1\n    max_replicas: 2\n"
                 "    sla: {ttft_p95: 2s, inflight_per_replica: 2}\n",
             "", "preemption: {enabled: true, grace: 500ms}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  // The youngest batch tenant is on GPU 0, but deleting it (0.25) cannot make room for 0.5 there.
  Create({{"name", "b0"},
          {"memory", "0.25"},
          {"gpu", 0},
          {"priority", "batch"},
          {"command", {"sleep", "600"}}});
  ProcessResult bench =
      RunProcess({Gpufrac(), "bench", "--url", "http://127.0.0.1:" + std::to_string(port_),
                  "--model", "chat", "--concurrency", "6", "--duration", "3s",
                  "--output-tokens-mean", "20", "--json", "--no-progress"},
                 {}, std::chrono::seconds(60));
  ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
  ASSERT_TRUE(WaitReplicas(
      "chat", [](int n) { return n == 2; }, 10000))
      << ServeLog();
  const std::string log = ServeLog();
  EXPECT_NE(log.find("preempted=b1 "), std::string::npos) << log;
  EXPECT_EQ(log.find("preempted=b0 "), std::string::npos) << log;
  EXPECT_EQ(Call("GET", "/v1/tenants/b0").body["state"], "running");
  EXPECT_EQ(Call("GET", "/v1/tenants/inf0").body["state"], "running");
  EXPECT_EQ(Call("GET", "/v1/tenants/b1").status, 404);
}

TEST_F(ServeMixedTest, EveryOpenAiRouteIsServedStreamedAndWhole) {
  StartAgent();
  StartServe("models:\n  - name: chat\n    command: " +
             Synth({"--model", "{model}", "--ttft-ms", "5", "--itl-ms", "2"}) +
             "\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n"
             "  - name: embed\n    command: " +
             Synth({"--model", "{model}"}) +
             "\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  ASSERT_TRUE(WaitReplicas("embed", [](int n) { return n == 1; }));
  // GET /v1/models: OpenAI's list, both models.
  HttpReply models = HttpRequest(port_, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  json list = json::parse(models.body, nullptr, false);
  ASSERT_TRUE(list.is_object()) << models.body;
  EXPECT_EQ(list["object"], "list");
  std::vector<std::string> ids;
  for (const json& m : list["data"]) {
    EXPECT_EQ(m["object"], "model");
    ids.push_back(m["id"]);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"chat", "embed"}));
  // Legacy completions, streamed: an event stream ending in [DONE].
  HttpReply streamed = HttpRequest(port_, "POST", "/v1/completions",
                                   R"({"model": "chat", "prompt": "hi", "max_tokens": 3,)"
                                   R"( "stream": true})");
  EXPECT_EQ(streamed.status, 200);
  EXPECT_NE(streamed.Header("content-type").find("text/event-stream"), std::string::npos);
  EXPECT_NE(streamed.body.find("[DONE]"), std::string::npos) << streamed.body;
  // Whole answers: completions and chat with stream false come back as one JSON body.
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    const std::string body =
        std::string(path) == "/v1/completions"
            ? R"({"model": "chat", "prompt": "hi", "max_tokens": 3, "stream": false})"
            : R"({"model": "chat", "messages": [{"role": "user", "content": "hi"}],)"
              R"( "max_tokens": 3, "stream": false})";
    HttpReply whole = HttpRequest(port_, "POST", path, body);
    EXPECT_EQ(whole.status, 200) << path;
    json answer = json::parse(whole.body, nullptr, false);
    ASSERT_TRUE(answer.is_object()) << path << ": " << whole.body;
    EXPECT_TRUE(answer["choices"].is_array()) << whole.body;
  }
  // Only the streamed answer is a TTFT sample: a whole chat answer is a whole generation.
  EXPECT_EQ(Metric("gpufrac_serve_ttft_seconds_count{model=\"chat\"}"), 1);
  EXPECT_EQ(Metric("gpufrac_serve_request_duration_seconds_count{model=\"chat\"}"), 3);
}

TEST_F(ServeMixedTest, EventsReachTheClientAsTheReplicaSendsThem) {
  // Five tokens 200 ms apart: a gateway that buffered the answer would deliver the first event
  // with the last, 800 ms late.
  StartAgent();
  StartServe(
      "models:\n  - name: chat\n    command: " + Synth({"--ttft-ms", "10", "--itl-ms", "200"}) +
      "\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n");
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  const std::string body = ChatBody("chat", 5);
  const int fd = SendRaw(port_,
                         "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_GE(fd, 0);
  std::string received;
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first_event{}, done{};
  char buf[4096];
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    received.append(buf, static_cast<size_t>(n));
    const auto now = std::chrono::steady_clock::now();
    if (first_event == decltype(first_event){} &&
        received.find("\"content\":\"w") != std::string::npos) {
      first_event = now;
    }
    if (received.find("[DONE]") != std::string::npos) {
      done = now;
      break;
    }
  }
  close(fd);
  ASSERT_NE(first_event, decltype(first_event){}) << received;
  ASSERT_NE(done, decltype(done){}) << received;
  EXPECT_GE(done - first_event, std::chrono::milliseconds(600)) << received;
}

}  // namespace
}  // namespace gpufrac::testing
