// Replicas' tenants are never forgotten: a delete the node agent could not take (it was down) is
// retried until it is confirmed, so no replica keeps holding its GPU share after the gateway let
// it go.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "serve_test_support.h"
#include "support/unix_listener.h"

namespace gpufrac::testing {
namespace {

class ServeLifecycleTest : public ServeFixture {
 protected:
  std::string Model(const std::string& name) const {
    return "  - name: " + name + "\n    command: " + Synth({"--model", "{model}"}) +
           "\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n";
  }
};

TEST_F(ServeLifecycleTest, AReplicaWhoseDeleteFailedIsDeletedOnceTheAgentIsBack) {
  StartAgent();
  StartServe("models:\n" + Model("chat") + Model("gone"));
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  ASSERT_TRUE(WaitReplicas("gone", [](int n) { return n == 1; }));
  ASSERT_EQ(TenantPids("-gone-1").size(), 1u);
  // The agent dies; meanwhile a reload removes a model, whose replica must then be deleted.
  KillAgent(SIGKILL);
  WriteDeploy("models:\n" + Model("chat"));
  HttpReply reloaded = HttpRequest(port_, "POST", "/admin/reload");
  ASSERT_EQ(reloaded.status, 200) << reloaded.body;
  ASSERT_TRUE(WaitFor(
      [&] {
        return ServeLog().find("event=replica.delete_failed model=gone") != std::string::npos;
      },
      10000))
      << ServeLog();
  // Back (it adopts the tenants that kept running): the delete is retried and goes through.
  StartAgent();
  EXPECT_TRUE(WaitFor([&] { return TenantPids("-gone-").empty(); }, 20000)) << ServeLog();
  // The tenant is gone as soon as the agent deletes it; the gateway logs the stop once the
  // agent's answer is back on its loop, a moment later.
  EXPECT_TRUE(WaitFor(
      [&] { return ServeLog().find("event=replica.stopped model=gone") != std::string::npos; },
      5000))
      << ServeLog();
  EXPECT_TRUE(WaitFor([&] { return !Health()["models"].contains("gone"); }, 5000));
  // The other model was never touched, and serves.
  EXPECT_EQ(TenantPids("-chat-").size(), 1u);
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 2)).status, 200);
}

TEST_F(ServeLifecycleTest, AReplicaThatDiesBeforeServingIsRestartedWithBackoff) {
  StartAgent();
  // Exits at once, every time: each replacement waits 0.5 s, 1 s, 2 s, 4 s ... (the agent's
  // listing, read every second, is what notices the exit), instead of one start a second.
  StartServe(
      "models:\n  - name: crash\n    command: [sh, -c, \"exit 3\", \"{port}\"]\n"
      "    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n");
  std::this_thread::sleep_for(std::chrono::seconds(12));
  const std::string log = ServeLog();
  int starts = 0;
  for (size_t at = log.find("event=replica.starting"); at != std::string::npos;
       at = log.find("event=replica.starting", at + 1)) {
    ++starts;
  }
  EXPECT_GE(starts, 3) << log;  // it does keep trying
  EXPECT_LE(starts, 6) << log;
  EXPECT_NE(log.find("event=replica.failed model=crash"), std::string::npos) << log;
  EXPECT_EQ(HttpRequest(port_, "GET", "/health").status, 200);
}

// The docs start the agent in the background and serve right after it: serve must not lose the
// race to the agent's socket. It waits (saying so once) and starts when the agent answers.
TEST_F(ServeLifecycleTest, ServeStartedBeforeTheAgentWaitsForItThenServes) {
  socket_ = TempDir() + "/node.sock";  // where StartAgent puts it
  // The default 10 s wait must cover the sleeps below plus an agent that is slow to come up (an
  // AddressSanitizer build on a loaded machine): a generous wait keeps this about the waiting.
  serve_args_ = "--agent-wait 60s";
  LaunchServe("models:\n" + Model("chat"));
  ASSERT_TRUE(
      WaitFor([&] { return ServeLog().find("event=agent.waiting") != std::string::npos; }, 5000))
      << ServeLog();
  EXPECT_NE(ServeLog().find("up_to_ms=60000"), std::string::npos) << ServeLog();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  int status = 0;
  EXPECT_EQ(waitpid(serve_, &status, WNOHANG), 0) << "serve gave up on the agent:\n" << ServeLog();
  StartAgent();
  EXPECT_TRUE(WaitFor(
      [&] { return HttpRequest(port_, "GET", "/health", "", "", 1000).status == 200; }, 10000))
      << ServeLog();
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; })) << ServeLog();
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 2)).status, 200);
  const std::string log = ServeLog();
  EXPECT_EQ(log.find("event=agent.waiting"), log.rfind("event=agent.waiting")) << "logged once";
  EXPECT_NE(log.find("event=agent.ready"), std::string::npos) << log;
}

// No agent at all: serve gives up after --agent-wait with the agent's address and why (exit 1).
TEST_F(ServeLifecycleTest, WithoutAnAgentServeGivesUpAfterTheWait) {
  socket_ = TempDir() + "/node.sock";
  WriteDeploy("models:\n" + Model("chat"));
  const auto start = std::chrono::steady_clock::now();
  ProcessResult r = RunGpufrac({"serve", deploy_path_, "--agent-wait", "1s"});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_GE(s, 1.0);
  EXPECT_LT(s, 8.0);
  EXPECT_NE(r.err.find("gpufrac serve: error: node agent at " + socket_ +
                       ": cannot reach the agent at '" + socket_ +
                       "': No such file or directory (waited 1000ms for it)"),
            std::string::npos)
      << r.err;
  // Besides the error, only the one line saying it waits.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  EXPECT_NE(r.err.find("event=agent.waiting"), std::string::npos) << r.err;
  // A bad wait is a bad flag.
  ProcessResult bad = RunGpufrac({"serve", deploy_path_, "--agent-wait", "soon", "--check"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err,
            "gpufrac serve: error: --agent-wait: 'soon' is not a duration (like 250ms, 10s, 2m)\n");
}

// A share the host can never hold is a configuration error, not a refusal to wait out: at start
// serve names it like a bad file (exit 2) instead of retrying it forever.
TEST_F(ServeLifecycleTest, AShareTheHostCannotHoldIsRefusedAtStart) {
  devices_ = "H100:80GiB,H100:80GiB";
  StartAgent();
  // Each file is refused with exit 2 and one line naming the file, the key and the host's size.
  auto expect_refused = [this](const std::string& models, const std::string& message) {
    WriteDeploy("models:\n" + models);
    ProcessResult r = RunGpufrac({"serve", deploy_path_});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("gpufrac serve: error: " + deploy_path_ + ": " + message + "\n"),
              std::string::npos)
        << r.err;
  };
  expect_refused("  - name: pinned\n    command: " + Synth() +
                     "\n    gpu: {memory: \"0.1\", gpu: 3}\n    sla: {ttft_p95: 1s}\n",
                 "models[0].gpu.gpu: unknown GPU '3': this host has 2 GPU(s)");
  expect_refused(Model("chat") + "  - name: huge\n    command: " + Synth() +
                     "\n    gpu: {memory: 100GiB}\n    sla: {ttft_p95: 1s}\n",
                 "models[1].gpu.memory: '100GiB' is more than any GPU of this host has (80.0GiB)");
  // A byte limit no GPU here has: the agent refuses it too (400), so it must not wait for the
  // first start to say so as a replica.config_error.
  expect_refused(Model("chat") + "  - name: roomy\n    command: " + Synth() +
                     "\n    gpu: {memory: \"0.1\", memory_limit: 100GiB, gpu: 1}\n"
                     "    sla: {ttft_p95: 1s}\n",
                 "models[1].gpu.memory_limit: '100GiB' is more than any GPU of this host has "
                 "(80.0GiB)");
  EXPECT_TRUE(TenantPids("").empty()) << "nothing was started";
}

// The same error arriving while serving (here from a reload) is said once, stops the model's
// starts instead of retrying them with backoff forever, answers its requests with the cause at
// once, and shows in /health; a reload that fixes it starts the model.
TEST_F(ServeLifecycleTest, AShareTheAgentRefusesAsInvalidIsNotRetriedAndShowsInHealth) {
  devices_ = "H100:80GiB,H100:80GiB";
  StartAgent();
  StartServe("models:\n" + Model("chat"));
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  const std::string pinned = "  - name: pinned\n    command: " + Synth({"--model", "{model}"}) +
                             "\n    gpu: {memory: \"0.1\", gpu: 3}\n    sla: {ttft_p95: 1s}\n";
  WriteDeploy("models:\n" + Model("chat") + pinned);
  ASSERT_EQ(HttpRequest(port_, "POST", "/admin/reload").status, 200);
  ASSERT_TRUE(WaitFor([&] { return Health()["models"]["pinned"].contains("error"); }, 10000))
      << ServeLog();
  EXPECT_NE(Health()["models"]["pinned"]["error"].get<std::string>().find(
                "unknown GPU '3': this host has 2 GPU(s)"),
            std::string::npos)
      << Health().dump();
  // Retried with backoff, 3.5 s would have seen 4 starts (0.5 s, 1 s, 2 s apart).
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  const std::string log = ServeLog();
  auto count = [&](const std::string& what) {
    int n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("event=replica.starting model=pinned"), 1) << log;
  EXPECT_EQ(count("event=replica.config_error model=pinned"), 1) << log;
  EXPECT_EQ(count("event=replica.start_failed model=pinned"), 0) << log;
  HttpReply refused = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("pinned", 2));
  EXPECT_EQ(refused.status, 503);
  EXPECT_LT(refused.ms, 1000) << "answered at once, not after the queue timeout";
  EXPECT_NE(refused.body.find("cannot start a replica"), std::string::npos) << refused.body;
  EXPECT_NE(refused.body.find("unknown GPU '3'"), std::string::npos) << refused.body;
  // The other model is untouched.
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 2)).status, 200);
  // Fixed and reloaded: the error goes, the model starts.
  std::string fixed = pinned;
  fixed.replace(fixed.find("gpu: 3"), 6, "gpu: 1");
  WriteDeploy("models:\n" + Model("chat") + fixed);
  ASSERT_EQ(HttpRequest(port_, "POST", "/admin/reload").status, 200);
  ASSERT_TRUE(WaitReplicas("pinned", [](int n) { return n == 1; })) << ServeLog();
  EXPECT_FALSE(Health()["models"]["pinned"].contains("error")) << Health().dump();
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("pinned", 2)).status, 200);
}

// Stands between serve and the agent, passing every call through, but holds the agent's answer to
// creates that name `slow` for `delay`: a create still in flight when the test reloads.
class SlowCreates {
 public:
  SlowCreates(std::string agent, std::string slow, std::chrono::milliseconds delay)
      : agent_(std::move(agent)), slow_(std::move(slow)), delay_(delay) {
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = accept(listener_.fd(), nullptr, nullptr);
        if (fd < 0) return;
        std::lock_guard lock(mu_);
        calls_.emplace_back([this, fd] {
          Pass(fd);
          close(fd);
        });
      }
    });
  }
  ~SlowCreates() {
    listener_.Shutdown();
    thread_.join();
    std::lock_guard lock(mu_);
    for (std::thread& t : calls_) t.join();
  }
  const std::string& path() const { return listener_.path(); }
  int held() const { return held_; }

 private:
  void Pass(int fd) {
    // One call a connection (the client says Connection: close): the head, then its body.
    std::string in;
    char c;
    while (in.find("\r\n\r\n") == std::string::npos && read(fd, &c, 1) == 1) in += c;
    const size_t cl = in.find("Content-Length: ");
    size_t length = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
    for (; length > 0 && read(fd, &c, 1) == 1; --length) in += c;
    const int agent = ConnectRaw(agent_);
    if (agent < 0) return;
    EXPECT_EQ(write(agent, in.data(), in.size()), static_cast<ssize_t>(in.size()));
    const std::string reply = ReadAll(agent, 30000);
    close(agent);
    if (in.rfind("POST ", 0) == 0 && in.find(slow_) != std::string::npos) {
      ++held_;
      std::this_thread::sleep_for(delay_);
    }
    EXPECT_EQ(write(fd, reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  }

  const std::string agent_, slow_;
  const std::chrono::milliseconds delay_;
  std::atomic<int> held_{0};
  UnixListener listener_;
  std::mutex mu_;
  std::vector<std::thread> calls_;
  std::thread thread_;
};

// A create refused (400) for a spec that a reload replaced while it was in flight says nothing
// about the new spec: it used to set config_error on the model anyway (the reload had just cleared
// it), and the fixed model started no replica until yet another reload.
TEST_F(ServeLifecycleTest, ARefusalOfASpecAReloadReplacedDoesNotBlockTheNewSpec) {
  devices_ = "H100:80GiB,H100:80GiB";
  StartAgent();
  const std::string agent = socket_;
  // Only the first replica's create is held: the one of the refused spec.
  SlowCreates proxy(agent, "-pinned-1\"", std::chrono::milliseconds(2500));
  socket_ = proxy.path();  // serve (and TenantPids) reach the agent through it
  StartServe("models:\n" + Model("chat"));
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; })) << ServeLog();
  const std::string pinned = "  - name: pinned\n    command: " + Synth({"--model", "{model}"}) +
                             "\n    gpu: {memory: \"0.1\", gpu: 3}\n    sla: {ttft_p95: 1s}\n";
  WriteDeploy("models:\n" + Model("chat") + pinned);
  ASSERT_EQ(HttpRequest(port_, "POST", "/admin/reload").status, 200);
  ASSERT_TRUE(WaitFor([&] { return proxy.held() == 1; }, 10000)) << ServeLog();
  // Fixed while the refused create is still on its way back.
  std::string fixed = pinned;
  fixed.replace(fixed.find("gpu: 3"), 6, "gpu: 1");
  WriteDeploy("models:\n" + Model("chat") + fixed);
  ASSERT_EQ(HttpRequest(port_, "POST", "/admin/reload").status, 200);
  // The refusal arrives, as a plain failed start of the replaced replica.
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = ServeLog();
        return log.find("event=replica.start_failed model=pinned") != std::string::npos ||
               log.find("event=replica.config_error model=pinned") != std::string::npos;
      },
      10000))
      << ServeLog();
  EXPECT_EQ(ServeLog().find("event=replica.config_error"), std::string::npos) << ServeLog();
  ASSERT_TRUE(WaitReplicas("pinned", [](int n) { return n == 1; })) << ServeLog();
  EXPECT_FALSE(Health()["models"]["pinned"].contains("error")) << Health().dump();
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("pinned", 2)).status, 200);
  // Stopped while the proxy still passes its deletes, and the agent named again for the cleanup.
  EXPECT_EQ(StopServe(SIGTERM), 0) << ServeLog();
  socket_ = agent;
}

}  // namespace
}  // namespace gpufrac::testing
