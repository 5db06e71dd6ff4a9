// The preemption plan: batch tenants only, the GPU that needs the fewest, youngest first.
#include "serve/preemption.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace gpufrac::serve {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

TenantInfo T(const std::string& id, int gpu, bool batch, int64_t created, uint64_t gib) {
  TenantInfo t;
  t.id = id;
  t.gpu = gpu;
  t.batch = batch;
  t.state = "running";
  t.created_ms = created;
  t.committed = gib * kGiB;
  return t;
}

GpuShare Memory(const std::string& memory, const std::string& gpu = "") {
  GpuShare s;
  s.memory = memory;
  s.gpu = gpu;
  return s;
}

TEST(ServePreemptionTest, PicksTheGpuNeedingTheFewestVictimsYoungestFirst) {
  const std::vector<GpuRoom> gpus = {{0, "", 80 * kGiB, 0}, {1, "", 80 * kGiB, 10 * kGiB}};
  const std::vector<TenantInfo> tenants = {
      T("inf0", 0, false, 1, 60), T("b0-old", 0, true, 2, 10), T("b0-young", 0, true, 9, 10),
      T("b1", 1, true, 3, 30),    T("inf1", 1, false, 4, 40),
  };
  // 40 GiB: GPU 0 can free only 20 (inference is never touched); GPU 1 frees 30 + 10 free.
  EXPECT_EQ(PlanPreemption(Memory("40GiB"), gpus, tenants), std::vector<std::string>{"b1"});
  // 15 GiB: GPU 0 needs both its batch tenants, GPU 1 one; fewest wins.
  EXPECT_EQ(PlanPreemption(Memory("15GiB"), gpus, tenants), std::vector<std::string>{"b1"});
  // Pinned to GPU 0: youngest first, only as many as needed.
  EXPECT_EQ(PlanPreemption(Memory("10GiB", "0"), gpus, tenants),
            std::vector<std::string>{"b0-young"});
  EXPECT_EQ(PlanPreemption(Memory("20GiB", "0"), gpus, tenants),
            (std::vector<std::string>{"b0-young", "b0-old"}));
  // A fraction resolves against each card.
  EXPECT_EQ(PlanPreemption(Memory("0.5"), gpus, tenants), std::vector<std::string>{"b1"});
}

TEST(ServePreemptionTest, NoPlanWhenMemoryCannotMakeRoomOrIsNotTheProblem) {
  const std::vector<GpuRoom> gpus = {{0, "", 80 * kGiB, 0}};
  const std::vector<TenantInfo> tenants = {T("inf", 0, false, 1, 70), T("b", 0, true, 2, 10)};
  EXPECT_TRUE(PlanPreemption(Memory("20GiB"), gpus, tenants).empty());  // 10 GiB is all it frees
  // Memory fits already (the refusal was about compute): nothing to plan by memory.
  const std::vector<GpuRoom> roomy = {{0, "", 80 * kGiB, 30 * kGiB}};
  EXPECT_TRUE(PlanPreemption(Memory("20GiB"), roomy, tenants).empty());
  // Exited tenants and inference tenants are never victims.
  std::vector<TenantInfo> exited = {T("b", 0, true, 2, 80)};
  exited[0].state = "exited";
  EXPECT_TRUE(PlanPreemption(Memory("20GiB"), gpus, exited).empty());
}

TEST(ServePreemptionTest, APinnedReplicaOnlyEverPreemptsOnItsOwnGpu) {
  const std::vector<GpuRoom> gpus = {{0, "GPU-aaaa1111-0000", 80 * kGiB, 0},
                                     {1, "GPU-bbbb2222-0000", 80 * kGiB, 0}};
  const std::vector<TenantInfo> tenants = {
      T("b0-old", 0, true, 1, 10),
      T("b0-young", 0, true, 5, 10),
      T("b1-young", 1, true, 9, 70),
      T("inf1", 1, false, 2, 10),
  };
  // Pinned to GPU 0 by UUID prefix: the plan looks at GPU 0 only, though GPU 1 frees more.
  EXPECT_EQ(PlanPreemption(Memory("70GiB", "GPU-aaaa"), gpus, tenants), std::vector<std::string>{});
  EXPECT_EQ(PlanPreemption(Memory("10GiB", "GPU-aaaa"), gpus, tenants),
            std::vector<std::string>{"b0-young"});
  // The fallback too: only GPU 0's batch tenants, youngest first, never GPU 1's.
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "GPU-aaaa"), gpus, tenants, {}),
            (std::vector<std::string>{"b0-young", "b0-old"}));
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "0"), gpus, tenants, {"b0-young"}),
            std::vector<std::string>{"b0-old"});
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "1"), gpus, tenants, {}),
            std::vector<std::string>{"b1-young"});
  // Unpinned: every GPU's batch tenants, youngest first; inference never.
  EXPECT_EQ(FallbackVictims(Memory("10GiB"), gpus, tenants, {}),
            (std::vector<std::string>{"b1-young", "b0-young", "b0-old"}));
  // Unpinned, a batch tenant the listing puts on no known GPU may go too; pinned, it may not.
  std::vector<TenantInfo> with_unknown = tenants;
  with_unknown.push_back(T("b-unknown", -1, true, 3, 10));
  EXPECT_EQ(FallbackVictims(Memory("10GiB"), gpus, with_unknown, {}),
            (std::vector<std::string>{"b1-young", "b0-young", "b-unknown", "b0-old"}));
  EXPECT_EQ(FallbackVictims(Memory("10GiB", "0"), gpus, with_unknown, {}),
            (std::vector<std::string>{"b0-young", "b0-old"}));
}

TEST(ServePreemptionTest, MemoryFitsWhereSomeAllowedGpuHasItFree) {
  const std::vector<GpuRoom> gpus = {{0, "GPU-aaaa", 80 * kGiB, 10 * kGiB},
                                     {1, "GPU-bbbb", 80 * kGiB, 30 * kGiB}};
  EXPECT_TRUE(MemoryFitsSomewhere(Memory("20GiB"), gpus));
  EXPECT_FALSE(MemoryFitsSomewhere(Memory("20GiB", "0"), gpus));
  EXPECT_TRUE(MemoryFitsSomewhere(Memory("0.125"), gpus));  // 10 GiB of 80
  EXPECT_FALSE(MemoryFitsSomewhere(Memory("0.5"), gpus));
}

// A node agent on a unix socket that answers each request with `answer(method, path)` (status and
// JSON body) and records what was asked.
class FakeAgent {
 public:
  using Answer =
      std::function<std::pair<int, nlohmann::json>(const std::string&, const std::string&)>;
  explicit FakeAgent(Answer answer) : answer_(std::move(answer)) {
    char dir[] = "/tmp/gpufrac-preempt-XXXXXX";
    EXPECT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/agent.sock";
    listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(listener_, 16), 0);
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        Serve(fd);
        close(fd);
      }
    });
  }
  ~FakeAgent() {
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  std::vector<std::string> asked() {
    std::lock_guard lock(mu_);
    return asked_;
  }

 private:
  void Serve(int fd) {
    std::string in;
    char c;
    while (in.find("\r\n\r\n") == std::string::npos && read(fd, &c, 1) == 1) in += c;
    const size_t sp1 = in.find(' '), sp2 = in.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos) return;
    const std::string method = in.substr(0, sp1);
    const std::string target = in.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string path = target.substr(0, target.find('?'));
    const size_t cl = in.find("Content-Length: ");
    size_t length = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
    for (; length > 0 && read(fd, &c, 1) == 1; --length) {
    }
    {
      std::lock_guard lock(mu_);
      asked_.push_back(method + " " + path);
    }
    const auto [status, body] = answer_(method, path);
    const std::string text = body.dump();
    const std::string reply =
        "HTTP/1.1 " + std::to_string(status) +
        " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(text.size()) +
        "\r\nConnection: close\r\n\r\n" + text;
    EXPECT_EQ(write(fd, reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  }

  Answer answer_;
  std::string dir_, path_;
  int listener_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> asked_;
};

nlohmann::json Tenant(const std::string& id, bool batch, uint64_t gib) {
  return {{"id", id},
          {"state", "running"},
          {"gpu", 0},
          {"created_ms", 1},
          {"memory", {{"used", gib * kGiB}, {"request", gib * kGiB}}},
          {"compute", {{"priority", batch ? "batch" : "inference"}}}};
}

nlohmann::json Gpus(uint64_t free_gib) {
  return {{"gpus",
           {{{"index", 0},
             {"uuid", "GPU-aaaa"},
             {"memory", {{"total", 80 * kGiB}, {"free", free_gib * kGiB}}}}}}};
}

const nlohmann::json kRefused = {{"error", {{"message", "does not fit"}}}};

TEST(ServePreemptionTest, ANameAlreadyTakenDeletesNoBatchWork) {
  // The agent refuses with 409 because the name exists; there would be room without the batch job.
  FakeAgent agent([](const std::string& method, const std::string& path) {
    if (method == "POST") return std::pair{409, kRefused};
    if (path == "/v1/gpus") return std::pair{200, Gpus(10)};
    if (path == "/v1/tenants") {
      return std::pair{
          200, nlohmann::json{
                   {"tenants", {Tenant("sv1-chat-1", false, 20), Tenant("batchjob", true, 40)}}}};
    }
    return std::pair{200, nlohmann::json::object()};
  });
  PreemptionResult result;
  const Status s = CreateWithPreemption(NodeClient(agent.path()), "sv1-chat-1", {"srv"},
                                        Memory("20GiB"), true, 100, &result);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(result.preempted.empty());
  for (const std::string& call : agent.asked()) EXPECT_NE(call.rfind("DELETE", 0), 0u) << call;
}

TEST(ServePreemptionTest, NoBatchWorkIsDeletedWhenEvenAllOfItWouldNotMakeRoom) {
  // 70 GiB asked, 10 free, 20 held by batch work: deleting it cannot make room.
  FakeAgent agent([](const std::string& method, const std::string& path) {
    if (method == "POST") return std::pair{409, kRefused};
    if (path == "/v1/gpus") return std::pair{200, Gpus(10)};
    if (path == "/v1/tenants") {
      return std::pair{
          200,
          nlohmann::json{{"tenants", {Tenant("inf", false, 50), Tenant("batchjob", true, 20)}}}};
    }
    return std::pair{200, nlohmann::json::object()};
  });
  PreemptionResult result;
  const Status s = CreateWithPreemption(NodeClient(agent.path()), "sv1-big-1", {"srv"},
                                        Memory("70GiB"), true, 100, &result);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(result.preempted.empty());
  EXPECT_FALSE(result.maybe_created) << "the agent answered";
  for (const std::string& call : agent.asked()) EXPECT_NE(call.rfind("DELETE", 0), 0u) << call;
  // Where memory is free but the create is refused anyway (compute), the youngest batch tenant
  // still goes: the fallback.
  std::atomic<int> posts{0};
  FakeAgent compute([&](const std::string& method, const std::string& path) {
    if (method == "POST") {
      return ++posts == 1 ? std::pair{409, kRefused}
                          : std::pair{201, Tenant("sv1-small-1", false, 5)};
    }
    if (path == "/v1/gpus") return std::pair{200, Gpus(10)};
    if (path == "/v1/tenants") {
      return std::pair{200, nlohmann::json{{"tenants", {Tenant("batchjob", true, 20)}}}};
    }
    return std::pair{200, nlohmann::json::object()};
  });
  PreemptionResult fallback;
  EXPECT_TRUE(CreateWithPreemption(NodeClient(compute.path()), "sv1-small-1", {"srv"},
                                   Memory("5GiB"), true, 100, &fallback)
                  .ok());
  EXPECT_EQ(fallback.preempted, std::vector<std::string>{"batchjob"});
}

TEST(ServePreemptionTest, AVictimAnotherStartDeletedFirstIsNotCounted) {
  std::atomic<int> posts{0};
  FakeAgent agent([&](const std::string& method, const std::string& path) {
    if (method == "POST") {
      return ++posts == 1 ? std::pair{409, kRefused}
                          : std::pair{201, Tenant("sv1-chat-2", false, 20)};
    }
    if (method == "DELETE") return std::pair{404, kRefused};  // gone already
    if (path == "/v1/gpus") return std::pair{200, Gpus(10)};
    if (path == "/v1/tenants") {
      return std::pair{200, nlohmann::json{{"tenants", {Tenant("batchjob", true, 40)}}}};
    }
    return std::pair{200, nlohmann::json::object()};
  });
  PreemptionResult result;
  EXPECT_TRUE(CreateWithPreemption(NodeClient(agent.path()), "sv1-chat-2", {"srv"}, Memory("20GiB"),
                                   true, 100, &result)
                  .ok());
  EXPECT_TRUE(result.preempted.empty()) << "counted twice, logged for a tenant it never deleted";
}

TEST(ServePreemptionTest, ACreateWithoutAnAnswerMayHaveCreatedTheTenant) {
  PreemptionResult result;
  const Status s = CreateWithPreemption(NodeClient("/nonexistent/agent.sock"), "sv1-chat-1",
                                        {"srv"}, Memory("5GiB"), true, 100, &result);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(result.maybe_created);
}

}  // namespace
}  // namespace gpufrac::serve
