// gpufrac node end to end: the real agent binary on a temp unix socket, real tenant processes on
// the simulated GPUs, every call over HTTP. Tenants, placement, bad input, config, ps.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "node_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

class NodeApiTest : public NodeFixture {};

// The names in `dir`, to see what a start left behind.
std::set<std::string> Files(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

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

// Fractions resolve per card: a byte limit below the request on one card is fine on another, and
// is refused only where it is below (400 only when it is below on every card it may go to).
TEST_F(NodeApiTest, ChecksTheLimitAgainstTheRequestOnEachCardOfMixedSizes) {
  devices_ = "H100:80GiB,A100:40GiB";
  StartAgent();
  const json sleep = {"sleep", "30"};
  // Half of GPU 1 is 20 GiB, within 30 GiB (half of GPU 0 would be 40 GiB, above it).
  json t = Create({{"name", "half"},
                   {"memory", "0.5"},
                   {"memory_limit", "30GiB"},
                   {"gpu", 1},
                   {"command", sleep}});
  EXPECT_EQ(t["gpu"], 1);
  EXPECT_EQ(t["memory"]["limit"], 30 * kGiB);
  // Without an explicit GPU it goes where it is valid, and says why not elsewhere when full.
  t = Create(
      {{"name", "third"}, {"memory", "0.25"}, {"memory_limit", "15GiB"}, {"command", sleep}});
  EXPECT_EQ(t["gpu"], 1);
  ApiReply r =
      Call("POST", "/v1/tenants",
           json({{"name", "x"}, {"memory", "0.5"}, {"memory_limit", "30GiB"}, {"command", sleep}})
               .dump());
  EXPECT_EQ(r.status, 409) << r.raw;
  EXPECT_EQ(r.body["error"]["message"],
            "does not fit: GPU 0: memory_limit: 30.0GiB is below the request 40.0GiB; GPU 1: asked "
            "20.0GiB, free 10.0GiB of 40.0GiB");
  // Below the request on the one card asked for, or on every card: the caller's mistake.
  r = Call("POST", "/v1/tenants",
           json({{"name", "x"},
                 {"memory", "0.5"},
                 {"memory_limit", "30GiB"},
                 {"gpu", 0},
                 {"command", sleep}})
               .dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["message"], "memory_limit: 30.0GiB is below the request 40.0GiB");
  r = Call("POST", "/v1/tenants",
           json({{"name", "x"}, {"memory", "0.5"}, {"memory_limit", "10GiB"}, {"command", sleep}})
               .dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  // A size above the smaller card but within the larger, limit a fraction: valid on GPU 0.
  t = Create({{"name", "big"}, {"memory", "45GiB"}, {"memory_limit", "1.0"}, {"command", sleep}});
  EXPECT_EQ(t["gpu"], 0);
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
  // A live process that is nothing to the agent, for pids that must pass the pid checks.
  const pid_t sleeper_pid = StartProcess({"sleep", "30"}, {}, TempDir() + "/sleeper.out");
  tenant_pids_.push_back(sleeper_pid);
  const std::string sleeper = std::to_string(sleeper_pid);
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
      {"POST", "/v1/tenants", "{\"memory\": \"1e-12\", " + cmd + "}", 400,
       "memory: the fraction resolves to 0 bytes on a 80.0GiB card"},
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
      {"POST", "/v1/attach", "{\"token\": \"nope\", \"pid\": " + sleeper + "}", 403,
       "no running attach-only tenant has this token"},
      {"POST", "/v1/attach", "{\"token\": \"nope\", \"pid\": 1}", 400, "pid: 1 is init"},
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
       "compute_limit: 0.200 is below the compute request 0.500"},
      {"POST", "/v1/tenants",
       "{\"memory\": \"1GiB\", \"compute\": 0, \"compute_mode\": \"strict\", " + cmd + "}", 400,
       "compute: a strict tenant needs a share above 0"},
      {"POST", "/v1/tenants", "{\"memory\": \"1GiB\", \"compute_limit\": 0, " + cmd + "}", 400,
       "compute_limit: must be above 0"},
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

// With RLIMIT_NOFILE at the lowest free descriptor number, every number below the limit is
// taken, so the process can open nothing at all.
// A spawn that fails for want of a resource (here the agent's descriptors: pipe2 gets EMFILE) says
// nothing about the command, so it is 503, not 400: gpufrac serve takes a 400 as a configuration
// error and stops starting the model, which a transient shortage must not do. The same request
// succeeds once the resource is back.
TEST_F(NodeApiTest, ASpawnThatFailsForWantOfResourcesIs503AndTheRetrySucceeds) {
  StartAgent();
  const json spec = {{"name", "later"}, {"memory", "1GiB"}, {"command", {"sleep", "30"}}};
  // Connected (and accepted) before the limit drops: the request itself needs no new descriptor.
  const int fd = ConnectRaw(socket_);
  ASSERT_GE(fd, 0);
  const int before = LowestFreeFd(agent_);
  for (int i = 0; i < 250 && LowestFreeFd(agent_) == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  rlimit old{};
  ASSERT_EQ(prlimit(agent_, RLIMIT_NOFILE, nullptr, &old), 0) << strerror(errno);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(LowestFreeFd(agent_));
  ASSERT_EQ(prlimit(agent_, RLIMIT_NOFILE, &low, nullptr), 0) << strerror(errno);
  const std::string body = spec.dump();
  const std::string request =
      "POST /v1/tenants HTTP/1.1\r\nHost: agent\r\nContent-Type: "
      "application/json\r\nConnection: close\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  const std::string reply = ReadAll(fd, 10000);
  close(fd);
  ASSERT_EQ(prlimit(agent_, RLIMIT_NOFILE, &old, nullptr), 0) << strerror(errno);
  EXPECT_EQ(reply.rfind("HTTP/1.1 503", 0), 0u) << reply;
  EXPECT_NE(reply.find("temporar"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Too many open files"), std::string::npos) << reply;
  // The failed create released its admission: nothing committed, and the name is free again.
  EXPECT_EQ(Committed(0), 0u);
  json t = Create(spec);
  EXPECT_EQ(t["state"], "running");
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
  // --json is the agent's answer as it comes, {"tenants": [...]} (it used to be the bare array,
  // pretty-printed, which `jq .tenants` could not read).
  ProcessResult ps_json = RunGpufrac({"ps", "--node", socket_, "--json"});
  ASSERT_EQ(ps_json.exit_code, 0) << ps_json.err;
  const json listed = json::parse(ps_json.out, nullptr, false);
  ASSERT_TRUE(listed.is_object()) << ps_json.out;
  ASSERT_EQ(listed.size(), 1u) << ps_json.out;
  ASSERT_EQ(listed["tenants"].size(), 1u) << ps_json.out;
  EXPECT_EQ(listed["tenants"][0]["id"], "ps-me");
  EXPECT_EQ(std::count(ps_json.out.begin(), ps_json.out.end(), '\n'), 1) << ps_json.out;

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

// A socket path the kernel cannot bind is refused like the config file's socket: key, naming
// where it came from, before any lock file exists. It used to abort (exit 134, an uncaught Boost
// "File name too long") and leave SOCKET.lock and STATE.lock behind.
TEST_F(NodeApiTest, RefusesASocketPathTooLongFromTheFlagOrTheVariableBeforeAnyLock) {
  const std::string dir = TempDir() + "/start";
  std::filesystem::create_directory(dir);
  const std::string path = dir + "/" + std::string(130, 's') + ".sock";
  const std::string size = std::to_string(path.size());
  ProcessResult r = RunGpufrac({"node", "--socket", path, "--state", dir + "/n.db"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "gpufrac node: error: --socket: longer than 107 bytes (it is " + size +
                       "), the most a unix socket's path may have\n");
  EXPECT_EQ(Files(dir), std::set<std::string>{});
  r = RunGpufrac({"node", "--state", dir + "/n.db"}, {{"GPUFRAC_NODE_SOCKET", path}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "gpufrac node: error: GPUFRAC_NODE_SOCKET: longer than 107 bytes (it is " +
                       size + "), the most a unix socket's path may have\n");
  EXPECT_EQ(Files(dir), std::set<std::string>{});
  // The flag wins over the variable, and is the one named.
  r = RunGpufrac({"node", "--socket", path, "--state", dir + "/n.db"},
                 {{"GPUFRAC_NODE_SOCKET", dir + "/ok.sock"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("gpufrac node: error: --socket: longer than 107 bytes", 0), 0u) << r.err;
  // An empty --socket is refused too, not read as "not given" (the config's socket is a temp one,
  // so that an agent started by mistake would not take the default socket).
  const std::string config = TempDir() + "/node.yaml";
  std::ofstream(config) << "socket: " << TempDir() << "/fallback.sock\n";
  r = RunGpufrac({"node", "--config", config, "--socket", "", "--state", dir + "/n.db"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "gpufrac node: error: --socket: must not be empty\n");
  EXPECT_EQ(Files(dir), std::set<std::string>{});
}

// A start that fails after taking its locks and binding its socket (here: the TCP port is taken)
// says why in one line and removes the socket and the lock files it created; a lock file that was
// there before stays.
TEST_F(NodeApiTest, AStartThatCannotListenLeavesNoSocketOrLockFileBehind) {
  int port = 0;
  const int taken = ListenOnLoopback(&port);
  ASSERT_GE(taken, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string dir = TempDir() + "/start";
  std::filesystem::create_directory(dir);
  std::ofstream(dir + "/token") << "secret\n";
  const std::string config = TempDir() + "/node.yaml";
  std::ofstream(config) << "socket: " << dir << "/n.sock\nstate: " << dir
                        << "/n.db\ntcp:\n  address: " << address << "\n  token_file: " << dir
                        << "/token\n";
  ProcessResult r = RunGpufrac({"node", "--config", config});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "gpufrac node: error: cannot listen on " + address + ": Address already in use\n");
  EXPECT_EQ(Files(dir), std::set<std::string>{"token"});
  // A lock file that existed before this start is not this start's to remove.
  std::ofstream(dir + "/n.db.lock") << "";
  r = RunGpufrac({"node", "--config", config});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(Files(dir), (std::set<std::string>{"token", "n.db.lock"}));
  close(taken);
}

// Hours are durations everywhere the agent reads one: a delete's grace (up to 1h, as documented)
// and gpufrac top's interval. "1h" used to be refused as not a duration while "60m" passed.
TEST_F(NodeApiTest, DurationsInHoursAreAcceptedWithinTheirRanges) {
  StartAgent();
  Create({{"name", "slow"}, {"memory", "1GiB"}, {"command", {"sleep", "30"}}});
  // sleep ends on SIGTERM, so an hour of grace ends as soon as it does.
  ApiReply r = Call("DELETE", "/v1/tenants/slow?grace=1h");
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["reason"], "deleted; killed by signal 15") << r.raw;
  Create({{"name", "slow"}, {"memory", "1GiB"}, {"command", {"sleep", "30"}}});
  r = Call("DELETE", "/v1/tenants/slow?grace=1.5h");
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["message"], "grace: '1.5h' is not a duration up to 1h (like 5s, 1h)");
  EXPECT_EQ(Call("DELETE", "/v1/tenants/slow?grace=0.5h").status, 200);
  ProcessResult top = RunGpufrac({"top", "--once", "--interval", "1h", "--node", socket_});
  EXPECT_EQ(top.exit_code, 0) << top.err;
  top = RunGpufrac({"top", "--once", "--interval", "50ms", "--node", socket_});
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_EQ(top.err, "gpufrac top: error: --interval '50ms': expected a duration >= 100ms\n");
}

}  // namespace
}  // namespace gpufrac::testing
