// gpufrac node end to end: the real agent binary on a temp unix socket, real tenant processes on
// the simulated GPUs, every call over HTTP.
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

class NodeApiTest : public NodeFixture {};

TEST_F(NodeApiTest, CreatesListsInspectsAndDeletesATenant) {
  StartAgent();
  json t = Create({{"name", "chat"},
                   {"memory", "20GiB"},
                   {"memory_limit", "30GiB"},
                   {"command", {Probe(), "hold", "alloc", "1GiB"}}});
  EXPECT_EQ(t["id"], "chat");
  EXPECT_EQ(t["gpu"], 0);
  EXPECT_EQ(t["state"], "running");
  EXPECT_EQ(t["memory"]["request"], 20 * kGiB);
  EXPECT_EQ(t["memory"]["limit"], 30 * kGiB);
  // The tenant's own allocation shows up in its usage: it runs under the interposer.
  json live = WaitTenant("chat", [](const json& b) {
    return b["memory"]["used"].get<uint64_t>() >= kGiB && b["processes"] == 1;
  });
  EXPECT_EQ(live["memory"]["used"], kGiB + context_bytes_);
  ApiReply list = Call("GET", "/v1/tenants");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["tenants"].size(), 1u);
  EXPECT_EQ(list.body["tenants"][0]["id"], "chat");
  EXPECT_EQ(Committed(0), 20 * kGiB);

  ApiReply gone = Call("DELETE", "/v1/tenants/chat");
  ASSERT_EQ(gone.status, 200) << gone.raw;
  EXPECT_EQ(gone.body["state"], "exited");
  EXPECT_EQ(gone.body["exit_status"], 128 + SIGTERM);
  EXPECT_NE(gone.body["reason"].get<std::string>().find("deleted"), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/tenants/chat").status, 404);
  EXPECT_EQ(Committed(0), 0u);
}

TEST_F(NodeApiTest, WritesComputeSharesIntoTheLedger) {
  StartAgent();
  json t = Create({{"name", "batchy"},
                   {"memory", "20GiB"},
                   {"compute", 0.3},
                   {"compute_limit", 0.6},
                   {"priority", "batch"},
                   {"command", {"sleep", "30"}}});
  EXPECT_EQ(t["compute"]["request"], 0.3);
  EXPECT_EQ(t["compute"]["limit"], 0.6);
  EXPECT_EQ(t["compute"]["mode"], "fair");
  EXPECT_EQ(t["compute"]["priority"], "batch");
  json strict = Create({{"name", "strict"},
                        {"memory", "0.5"},
                        {"compute_mode", "strict"},
                        {"command", {"sleep", "30"}}});
  EXPECT_EQ(strict["compute"]["request"], 0.5);  // default: the memory share
  EXPECT_EQ(strict["compute"]["limit"], 0.5);
  // What the interposer will read: the ledger's limits, as a tenant maps them.
  Ledger ledger;
  ASSERT_TRUE(ledger.OpenAsTenant(Uuid(0).c_str()));
  uint64_t generation = 0;
  TenantSpec spec;
  uint64_t used = 0;
  int index = ledger.FindTenant("batchy", &generation);
  ASSERT_GE(index, 0);
  ASSERT_TRUE(ledger.ReadTenant(index, generation, &spec, &used));
  EXPECT_EQ(spec.compute_request, 0.3);
  EXPECT_EQ(spec.compute_limit, 0.6);
  EXPECT_EQ(spec.compute_mode, ComputeMode::kFair);
  EXPECT_EQ(spec.priority, Priority::kBatch);
  index = ledger.FindTenant("strict", &generation);
  ASSERT_GE(index, 0);
  ASSERT_TRUE(ledger.ReadTenant(index, generation, &spec, &used));
  EXPECT_EQ(spec.compute_mode, ComputeMode::kStrict);
  EXPECT_EQ(spec.compute_limit, 0.5);
  EXPECT_EQ(spec.priority, Priority::kInference);
}

TEST_F(NodeApiTest, ReportsTheComputeTheRuntimeMeasured) {
  StartAgent("backstop:\n  interval: 200ms\n");  // NVML (utilization included) every 200 ms
  Create({{"name", "spinner"}, {"memory", "4GiB"}, {"command", {Probe(), "spin", "4", "100"}}});
  json t = WaitTenant(
      "spinner", [](const json& b) { return b["compute"]["gpu_time_ns"].get<uint64_t>() > 0; });
  EXPECT_GT(t["compute"]["gpu_time_ns"].get<uint64_t>(), 0u);
  ApiReply m = Call("GET", "/metrics");
  const std::string series = "gpufrac_tenant_compute_seconds_total{tenant=\"spinner\",gpu=\"0\"} ";
  const size_t at = m.raw.find(series);
  ASSERT_NE(at, std::string::npos) << m.raw;
  EXPECT_GT(std::stod(m.raw.substr(at + series.size())), 0.0);
  // NVML's utilization of the card the spinner keeps busy, per GPU (API, /metrics).
  json gpu;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    gpu = Call("GET", "/v1/gpus").body["gpus"][0];
  } while (!(gpu["compute"]["busy"].is_number() && gpu["compute"]["busy"].get<double>() > 0.5) &&
           std::chrono::steady_clock::now() < until);
  EXPECT_GT(gpu["compute"]["busy"].get<double>(), 0.5) << gpu.dump();
  EXPECT_LE(gpu["compute"]["busy"].get<double>(), 1.0);
  m = Call("GET", "/metrics");
  EXPECT_NE(m.raw.find("gpufrac_gpu_compute_busy_ratio{gpu=\"0\",uuid=\"" + Uuid(0) + "\"} "),
            std::string::npos)
      << m.raw;
  EXPECT_NE(m.raw.find("gpufrac_tenant_compute_throttled_seconds_total{tenant=\"spinner\""),
            std::string::npos);
}

TEST_F(NodeApiTest, DeleteEscalatesToSigkillAfterTheGracePeriod) {
  StartAgent();
  Create({{"name", "stubborn"},
          {"memory", "1GiB"},
          {"command", {"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let sh install its trap
  ApiReply gone = Call("DELETE", "/v1/tenants/stubborn?grace=300ms");
  ASSERT_EQ(gone.status, 200) << gone.raw;
  EXPECT_EQ(gone.body["exit_status"], 128 + SIGKILL);
  EXPECT_NE(gone.body["reason"].get<std::string>().find("SIGKILL after the grace period"),
            std::string::npos);
}

TEST_F(NodeApiTest, PlacesByBinPackSpreadAndExplicitGpuAndRefusesWithReasons) {
  devices_ = "H100:80GiB,H100:80GiB,H100:80GiB";
  StartAgent();
  const json sleep = {"sleep", "30"};
  // Bin-pack keeps filling GPU 0 while the request fits there.
  EXPECT_EQ(Create({{"name", "a"}, {"memory", "30GiB"}, {"command", sleep}})["gpu"], 0);
  EXPECT_EQ(Create({{"name", "b"}, {"memory", "0.5"}, {"command", sleep}})["gpu"], 0);
  // Spread goes to an empty GPU.
  EXPECT_EQ(
      Create(
          {{"name", "c"}, {"memory", "10GiB"}, {"placement", "spread"}, {"command", sleep}})["gpu"],
      1);
  // Explicit GPU, by index and by UUID prefix.
  EXPECT_EQ(Create({{"name", "d"}, {"memory", "10GiB"}, {"gpu", 2}, {"command", sleep}})["gpu"], 2);
  EXPECT_EQ(Create({{"name", "e"},
                    {"memory", "5GiB"},
                    {"gpu", Uuid(1).substr(0, 12)},
                    {"command", sleep}})["gpu"],
            1);
  // Bin-pack now prefers GPU 0 (5 GiB free) for what fits there.
  EXPECT_EQ(Create({{"name", "f"}, {"memory", "5GiB"}, {"command", sleep}})["gpu"], 0);
  // Nothing has 75 GiB free: refused with every GPU's reason, nothing registered.
  ApiReply r = Call("POST", "/v1/tenants",
                    json({{"name", "g"}, {"memory", "75GiB"}, {"command", sleep}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(
      r.body["error"]["message"],
      "does not fit: GPU 0: asked 75.0GiB, free 5.0GiB of 80.0GiB; GPU 1: asked 75.0GiB, free "
      "65.0GiB of 80.0GiB; GPU 2: asked 75.0GiB, free 70.0GiB of 80.0GiB");
  r = Call("POST", "/v1/tenants",
           json({{"name", "h"}, {"memory", "71GiB"}, {"gpu", "2"}, {"command", sleep}}).dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(Committed(0), 75 * kGiB);
  EXPECT_EQ(Committed(1), 15 * kGiB);
  EXPECT_EQ(Committed(2), 10 * kGiB);
  EXPECT_EQ(Call("GET", "/v1/tenants").body["tenants"].size(), 6u);
}

TEST_F(NodeApiTest, BadRequestsGetA4xxAndTheAgentKeepsServing) {
  StartAgent("api:\n  request_timeout: 1s\n");
  // A slow client that never finishes its request, held open through everything below.
  const int slow = ConnectRaw(socket_);
  ASSERT_GE(slow, 0);
  const std::string partial =
      "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
  ASSERT_EQ(write(slow, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));

  struct Case {
    std::string method, target, body;
    int status;
    std::string message;
  };
  const std::string cmd = "\"command\": [\"true\"]";
  const std::vector<Case> cases = {
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\",", 400, "malformed JSON body"},
      {"POST", "/v1/tenants", "[1, 2]", 400, "the body must be a JSON object"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"colour\": 1, " + cmd + "}", 400,
       "unknown field 'colour'"},
      {"POST", "/v1/tenants", "{\"memory\": \"-1GiB\", " + cmd + "}", 400, "memory: '-1GiB'"},
      {"POST", "/v1/tenants", "{\"memory\": 5, " + cmd + "}", 400, "memory: expected a string"},
      {"POST", "/v1/tenants", "{\"memory\": \"900GiB\", " + cmd + "}", 400,
       "memory: 900.0GiB exceeds the largest GPU here (80.0GiB)"},
      {"POST", "/v1/tenants", "{\"memory\": \"99999999999TiB\", " + cmd + "}", 400,
       "memory: '99999999999TiB'"},
      {"POST", "/v1/tenants", "{\"memory\": \"2GiB\", \"memory_limit\": \"1GiB\", " + cmd + "}",
       400, "memory_limit: 1.0GiB is below the request 2.0GiB"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"release\": \"on_exit\", " + cmd + "}", 400,
       "release, attach_pid: only for attach-only tenants (no command)"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"release\": \"later\"}", 400,
       "release: expected \"on_delete\" or \"on_exit\""},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"attach_pid\": 0}", 400,
       "attach_pid: expected a process id"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"attach_pid\": 2147483647}", 400,
       "attach_pid: 2147483647 is not a running process"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"restart\": \"always\", " + cmd + "}", 400,
       "restart: expected \"never\" or \"on-failure\""},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"restart\": \"on-failure\"}", 400,
       "restart: needs a command"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"max_restarts\": 2, " + cmd + "}", 400,
       "max_restarts: only with restart \"on-failure\""},
      {"POST", "/v1/tenants",
       "{\"memory\": \"1GiB\", \"restart\": \"on-failure\", \"max_restarts\": -1, " + cmd + "}",
       400, "max_restarts: expected an integer in [0, 1000]"},
      {"POST", "/v1/attach", "", 400, "expected a JSON object"},
      {"POST", "/v1/attach", "{\"pid\": 1}", 400, "token: required"},
      {"POST", "/v1/attach", "{\"token\": \"x\", \"pid\": -4}", 400, "pid: required"},
      {"POST", "/v1/attach", "{\"token\": \"x\", \"pid\": 1, \"as\": 2}", 400,
       "unknown field 'as'"},
      {"POST", "/v1/attach", "{\"token\": \"x\", \"pid\": 2147483647}", 400,
       "pid: 2147483647 is not a running process"},
      {"POST", "/v1/attach", "{\"token\": \"nope\", \"pid\": 1}", 403,
       "no running attach-only tenant has this token"},
      {"GET", "/v1/attach", "", 405, "method GET not allowed on /v1/attach"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"command\": []}", 400,
       "command: expected a non-empty array"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"command\": [\"/nonexistent/x\"]}", 400,
       "cannot run '/nonexistent/x'"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"gpu\": 7, " + cmd + "}", 400,
       "gpu: unknown GPU '7'"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"name\": \"a b\", " + cmd + "}", 400,
       "name: 'a b'"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"placement\": \"best\", " + cmd + "}", 400,
       "placement: expected"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"burst_signal\": \"KILL\", " + cmd + "}",
       400, "burst_signal: expected a signal name"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"compute\": 1.5, " + cmd + "}", 400,
       "compute: expected a share of the GPU in [0, 1]"},
      {"POST", "/v1/tenants",
       "{\"memory\": \"1GiB\", \"compute\": 0.5, \"compute_limit\": 0.2, " + cmd + "}", 400,
       "compute_limit: 0.200000 is below the compute request 0.500000"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"priority\": \"urgent\", " + cmd + "}", 400,
       "priority: expected"},
      {"POST", "/v1/tenants",
       "{\"memory\": \"1GiB\", \"burst_hook\": \"https://x:1/\", " + cmd + "}", 400,
       "burst_hook: expected a URL"},
      {"GET", "/v1/tenants/nobody", "", 404, "no tenant 'nobody'"},
      {"DELETE", "/v1/tenants/nobody", "", 404, "no tenant 'nobody'"},
      {"DELETE", "/v1/tenants/nobody?grace=forever", "", 400, "grace: 'forever'"},
      {"GET", "/v2/things", "", 404, "no such endpoint: /v2/things"},
      {"PUT", "/v1/tenants", "", 405, "method PUT not allowed on /v1/tenants"},
  };
  for (const Case& c : cases) {
    ApiReply r = Call(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body << ": " << r.raw;
    ASSERT_TRUE(r.body.contains("error")) << r.raw;
    EXPECT_EQ(r.body["error"]["code"], c.status);
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find(c.message), std::string::npos)
        << r.raw;
  }
  // A 10 MB body is refused at the edge (the limit is 1 MiB) without being buffered.
  const int big = ConnectRaw(socket_);
  const std::string head =
      "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n";
  ASSERT_EQ(write(big, head.data(), head.size()), static_cast<ssize_t>(head.size()));
  std::string reply;
  std::thread sender([&] {
    const std::string chunk(1 << 16, 'x');
    for (int i = 0; i < 160; ++i) {
      if (write(big, chunk.data(), chunk.size()) < 0) break;
    }
  });
  reply = ReadAll(big, 10000);
  sender.join();
  close(big);
  EXPECT_EQ(reply.rfind("HTTP/1.1 413", 0), 0u) << reply.substr(0, 200);
  EXPECT_NE(reply.find("request body exceeds 1048576 bytes"), std::string::npos);

  // The slow client is answered 408 once its time is up; others were served meanwhile.
  const std::string slow_reply = ReadAll(slow, 10000);
  close(slow);
  EXPECT_EQ(slow_reply.rfind("HTTP/1.1 408", 0), 0u) << slow_reply;
  EXPECT_NE(slow_reply.find("request not completely received within 1000 ms"), std::string::npos);

  // Garbage instead of HTTP.
  const int junk = ConnectRaw(socket_);
  const std::string garbage = "HELLO THERE\r\n\r\n";
  ASSERT_EQ(write(junk, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  const std::string junk_reply = ReadAll(junk, 5000);
  close(junk);
  EXPECT_EQ(junk_reply.rfind("HTTP/1.1 400", 0), 0u) << junk_reply;

  EXPECT_EQ(Call("GET", "/v1/health").status, 200);
  EXPECT_EQ(Call("GET", "/v1/tenants").body["tenants"].size(), 0u);
  EXPECT_EQ(Committed(0), 0u);
}

TEST_F(NodeApiTest, PsShowsTheTenantsAndMetricsExportThem) {
  StartAgent();
  Create({{"name", "ps-me"}, {"memory", "0.25"}, {"command", {"sleep", "30"}}});
  ProcessResult ps = RunGpufrac({"ps", "--node", socket_});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_EQ(ps.out.rfind("ID ", 0), 0u) << ps.out;
  EXPECT_NE(ps.out.find("ps-me"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("0B/20.0GiB"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("running"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("sleep 30"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("0.25/1.00 inference"), std::string::npos) << ps.out;

  ApiReply m = Call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.raw.find("gpufrac_tenant_memory_request_bytes{tenant=\"ps-me\",gpu=\"0\"} " +
                       std::to_string(20 * kGiB) + "\n"),
            std::string::npos)
      << m.raw;
  EXPECT_NE(m.raw.find("gpufrac_gpu_memory_reserved_bytes{gpu=\"0\",uuid=\"" + Uuid(0) + "\"} " +
                       std::to_string(20 * kGiB) + "\n"),
            std::string::npos)
      << m.raw;
  EXPECT_NE(m.raw.find("# TYPE gpufrac_tenant_oom_refusals_total counter"), std::string::npos);

  // gpufrac top: one frame, and the live view quitting on q.
  ProcessResult top = RunGpufrac({"top", "--once", "--width", "16", "--node", socket_});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_NE(top.out.find("[::::............]  20.0GiB/80.0GiB committed, 0B used"),
            std::string::npos)
      << top.out;
  EXPECT_NE(top.out.find("  a ps-me  GPU 0  used 0B request 20.0GiB"), std::string::npos);
  const auto start = std::chrono::steady_clock::now();
  ProcessResult live =
      RunProcess({"sh", "-c", "(sleep 1.5; echo q) | " + Gpufrac() + " top --node " + socket_},
                 SimEnv(), std::chrono::seconds(20));
  EXPECT_EQ(live.exit_code, 0) << live.err;
  EXPECT_FALSE(live.timed_out);
  EXPECT_GE(std::count(live.out.begin(), live.out.end(), '['), 2) << live.out;  // refreshed
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));

  ProcessResult unreachable = RunGpufrac({"ps", "--node", TempDir() + "/none.sock"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_NE(unreachable.err.find("cannot reach the agent"), std::string::npos) << unreachable.err;
}

TEST_F(NodeApiTest, RefusesABadConfigFileAtStartNamingTheKey) {
  const std::string path = TempDir() + "/bad.yaml";
  std::ofstream(path) << "socket: " << TempDir() << "/x.sock\napi:\n  threads: 0\n";
  ProcessResult r = RunGpufrac({"node", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "gpufrac node: error: " + path + ": api.threads: must be between 1 and 64\n");
  std::ofstream(path) << "placment: spread\n";
  r = RunGpufrac({"node", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "gpufrac node: error: " + path + ": placment: unknown key\n");
}

TEST_F(NodeApiTest, RefusesToStartBesideALiveAgent) {
  StartAgent();
  ProcessResult r = RunGpufrac({"node", "--socket", socket_, "--state", TempDir() + "/b.db"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("another agent is serving on"), std::string::npos) << r.err;
  EXPECT_EQ(Call("GET", "/v1/health").status, 200);
}

// The NVML backstop: a process allocating on the agent's GPU without the interposer (plain
// LD_LIBRARY_PATH to the simulated driver) belongs to no tenant; warn mode flags it in the log,
// the API and /metrics, and leaves it running. A tenant under the interposer is not flagged, and
// NVML's figure for it is what the ledger charged.
TEST_F(NodeApiTest, BackstopFlagsAProcessAllocatingOutsideTheInterposer) {
  StartAgent("backstop:\n  mode: warn\n  interval: 100ms\n");
  json good = Create(
      {{"name", "good"}, {"memory", "10GiB"}, {"command", {Probe(), "hold", "alloc", "2GiB"}}});
  WaitTenant("good", [&](const json& b) {
    return b["memory"]["used"] == 2 * kGiB + context_bytes_ &&
           b["memory"]["nvml_used"].is_number() &&
           b["memory"]["nvml_used"] == 2 * kGiB + context_bytes_;
  });
  const pid_t stranger =
      StartProcess({Probe(), "hold", "alloc", "4GiB"}, SimEnv(), TempDir() + "/stranger.out");
  tenant_pids_.push_back(stranger);
  json offender;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (offender.is_null() && std::chrono::steady_clock::now() < deadline) {
    const json b = Call("GET", "/v1/backstop").body;
    for (const json& o : b["offenders"]) {
      if (o["pid"] == stranger) offender = o;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(offender.is_null()) << Call("GET", "/v1/backstop").raw;
  EXPECT_EQ(offender["reason"], "no_tenant");
  EXPECT_EQ(offender["action"], "flagged");
  EXPECT_TRUE(offender["tenant"].is_null());
  EXPECT_EQ(offender["used"], 4 * kGiB + context_bytes_);
  EXPECT_EQ(offender["gpu"], 0);
  // Warn mode leaves it running; the tenant within its limit is not an offender.
  EXPECT_EQ(kill(stranger, 0), 0);
  EXPECT_EQ(Call("GET", "/v1/backstop").body["offenders"].size(), 1u);
  const std::string labels = "gpu=\"0\",uuid=\"" + Uuid(0) + "\"";
  const std::string metrics = Call("GET", "/metrics").raw;
  EXPECT_NE(metrics.find("gpufrac_backstop_flagged_total{" + labels + ",reason=\"no_tenant\"} 1\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find("gpufrac_backstop_flagged_total{" + labels + ",reason=\"over_limit\"} 0\n"),
      std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_backstop_killed_total{" + labels + ",reason=\"no_tenant\"} 0\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_gpu_memory_unattributed_bytes{" + labels + "} " +
                         std::to_string(4 * kGiB + context_bytes_) + "\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_backstop_offender_memory_bytes{gpu=\"0\",pid=\"" +
                         std::to_string(stranger) +
                         "\",tenant=\"\",reason=\"no_tenant\",action=\"flagged\"}"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpufrac_tenant_memory_nvml_bytes{tenant=\"good\",gpu=\"0\"} " +
                         std::to_string(2 * kGiB + context_bytes_) + "\n"),
            std::string::npos);
  const std::string log = ReadFile(agent_log_);
  EXPECT_NE(log.find("event=backstop.flagged pid=" + std::to_string(stranger) +
                     " gpu=0 tenant=none reason=no_tenant used=4.5GiB"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("event=backstop.killed"), std::string::npos);
  // Once it ends, it is no longer an offender; the flag is counted once.
  kill(stranger, SIGKILL);
  EXPECT_EQ(WaitProcess(stranger, std::chrono::seconds(10)), 128 + SIGKILL);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Call("GET", "/v1/backstop").body["offenders"].empty() &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(Call("GET", "/v1/backstop").body["offenders"].empty());
  EXPECT_NE(
      Call("GET", "/metrics")
          .raw.find("gpufrac_backstop_flagged_total{" + labels + ",reason=\"no_tenant\"} 1\n"),
      std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/tenants/good").body["state"], "running");
}

// Kill mode: a stranger on the GPU is killed, and so is a tenant's process that went around the
// interposer (its shell drops LD_PRELOAD) and holds more than the tenant's limit; the tenant's
// record says why. A tenant within its limit is untouched.
TEST_F(NodeApiTest, BackstopKillsStrangersAndTenantsThatBypassedTheInterposer) {
  StartAgent("backstop:\n  mode: kill\n  interval: 100ms\n  tolerance: 0\n");
  Create({{"name", "good"}, {"memory", "10GiB"}, {"command", {Probe(), "hold", "alloc", "8GiB"}}});
  WaitTenant("good",
             [&](const json& b) { return b["memory"]["used"] == 8 * kGiB + context_bytes_; });
  Create({{"name", "escaper"},
          {"memory", "10GiB"},
          {"command", {"sh", "-c", "unset LD_PRELOAD; exec " + Probe() + " hold alloc 20GiB"}}});
  json dead = WaitTenant(
      "escaper", [](const json& b) { return b["state"] == "exited"; }, 15000);
  EXPECT_EQ(dead["exit_status"], 128 + SIGKILL);
  EXPECT_NE(dead["reason"].get<std::string>().find(
                "killed by the NVML backstop: process " + std::to_string(dead["pid"].get<int>()) +
                " holds 20.5GiB on GPU 0; tenant escaper's processes hold 20.5GiB, above its "
                "limit and tolerance (10.0GiB)"),
            std::string::npos)
      << dead.dump();
  const pid_t stranger =
      StartProcess({Probe(), "hold", "alloc", "1GiB"}, SimEnv(), TempDir() + "/stranger.out");
  tenant_pids_.push_back(stranger);
  EXPECT_EQ(WaitProcess(stranger, std::chrono::seconds(15)), 128 + SIGKILL);
  EXPECT_EQ(Call("GET", "/v1/tenants/good").body["state"], "running");
  const std::string labels = "gpu=\"0\",uuid=\"" + Uuid(0) + "\"";
  const std::string metrics = Call("GET", "/metrics").raw;
  for (const char* reason : {"no_tenant", "over_limit"}) {
    for (const char* family : {"flagged", "killed"}) {
      EXPECT_NE(metrics.find("gpufrac_backstop_" + std::string(family) + "_total{" + labels +
                             ",reason=\"" + reason + "\"} 1\n"),
                std::string::npos)
          << family << " " << reason << "\n"
          << metrics;
    }
  }
  const std::string log = ReadFile(agent_log_);
  EXPECT_NE(log.find("event=backstop.killed pid=" + std::to_string(stranger) +
                     " gpu=0 tenant=none reason=no_tenant"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event=tenant.killed id=escaper"), std::string::npos);
}

// backstop.mode: off samples nothing and exports no backstop series.
TEST_F(NodeApiTest, BackstopOffLeavesStrangersAlone) {
  StartAgent("backstop:\n  mode: off\n");
  const pid_t stranger =
      StartProcess({Probe(), "hold", "alloc", "1GiB"}, SimEnv(), TempDir() + "/stranger.out");
  tenant_pids_.push_back(stranger);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  json b = Call("GET", "/v1/backstop").body;
  EXPECT_EQ(b["mode"], "off");
  EXPECT_EQ(b["samples"], 0);
  EXPECT_EQ(Call("GET", "/metrics").raw.find("gpufrac_backstop_"), std::string::npos);
  EXPECT_EQ(kill(stranger, 0), 0);
}

// gpufrac run --node: the agent places and admits the tenant, the command runs under its limits,
// its exit status comes back, and the agent reclaims the tenant when it ends.
TEST_F(NodeApiTest, RunThroughTheAgentIsGovernedByItAndPassesTheExitStatus) {
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
TEST_F(NodeApiTest, AttachOnlyTenantsAreJoinedWithTheirToken) {
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

// An attach-only tenant survives an agent restart with its token and its joined processes.
TEST_F(NodeApiTest, AttachOnlyTenantsAreAdoptedAfterAnAgentRestart) {
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
TEST_F(NodeApiTest, TheSocketHasTheConfiguredModeAndGroup) {
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
TEST_F(NodeApiTest, RunUsesTheAgentAtTheDefaultSocketWhenOneAnswers) {
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

// GPU health from NVML: a card with uncorrected memory errors (the simulated NVML reports them
// from GPUFRAC_SIM_ECC_ERRORS) is reported unhealthy, in the log, the API, /metrics and top, and
// gets no new tenant: spread skips it, and asking for it explicitly is refused with the reason.
TEST_F(NodeApiTest, AnUnhealthyGpuIsReportedAndGetsNoNewTenants) {
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
