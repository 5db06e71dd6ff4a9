// The preemption plan: batch tenants only, the GPU that needs the fewest, youngest first.
#include "serve/preemption.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/unix_listener.h"

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

nlohmann::json Tenant(const std::string& id, bool batch, uint64_t gib) {
  return {{"id", id},
          {"state", "running"},
          {"gpu", 0},
          {"created_ms", 1},
          {"memory", {{"used", gib * kGiB}, {"request", gib * kGiB}}},
          {"compute", {{"priority", batch ? "batch" : "inference"}}}};
}

// What the fake agent says of its host: one 80 GiB GPU with `free_gib` free and these tenants.
// The first `refusals` creates get 409; later ones succeed. Deletes answer `delete_status`.
struct FakeHost {
  std::vector<nlohmann::json> tenants;
  uint64_t free_gib = 10;
  int refusals = 1 << 30;
  int delete_status = 200;
};

// A node agent on a unix socket that answers as `host` says and records what was asked.
class FakeAgent {
 public:
  explicit FakeAgent(FakeHost host) : host_(std::move(host)) {
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = accept(listener_.fd(), nullptr, nullptr);
        if (fd < 0) return;
        Serve(fd);
        close(fd);
      }
    });
  }
  ~FakeAgent() {
    listener_.Shutdown();
    thread_.join();
  }
  const std::string& path() const { return listener_.path(); }
  std::vector<std::string> asked() {
    std::lock_guard lock(mu_);
    return asked_;
  }
  bool deleted_any() {
    for (const std::string& call : asked()) {
      if (call.rfind("DELETE", 0) == 0) return true;
    }
    return false;
  }

 private:
  std::pair<int, nlohmann::json> Answer(const std::string& method, const std::string& path) {
    const nlohmann::json refused = {{"error", {{"message", "does not fit"}}}};
    if (method == "POST") {
      if (posts_++ < host_.refusals) return {409, refused};
      return {201, Tenant("created", false, 5)};
    }
    if (method == "DELETE") return {host_.delete_status, nlohmann::json::object()};
    if (path == "/v1/gpus") {
      return {200,
              {{"gpus",
                {{{"index", 0},
                  {"uuid", "GPU-aaaa"},
                  {"memory", {{"total", 80 * kGiB}, {"free", host_.free_gib * kGiB}}}}}}}};
    }
    return {200, {{"tenants", host_.tenants}}};
  }

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
    const auto [status, body] = Answer(method, path);
    const std::string text = body.dump();
    const std::string reply =
        "HTTP/1.1 " + std::to_string(status) +
        " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(text.size()) +
        "\r\nConnection: close\r\n\r\n" + text;
    EXPECT_EQ(write(fd, reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  }

  FakeHost host_;
  int posts_ = 0;  // only the serving thread touches it
  testing::UnixListener listener_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> asked_;
};

TEST(ServePreemptionTest, ANameAlreadyTakenDeletesNoBatchWork) {
  // The agent refuses with 409 because the name exists; there would be room without the batch job.
  FakeAgent agent(
      FakeHost{.tenants = {Tenant("sv1-chat-1", false, 20), Tenant("batchjob", true, 40)}});
  PreemptionResult result;
  const Status s = CreateWithPreemption(NodeClient(agent.path()), "sv1-chat-1", {"srv"},
                                        Memory("20GiB"), true, 100, &result);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(result.preempted.empty());
  EXPECT_FALSE(agent.deleted_any()) << "asked: " << agent.asked().size() << " calls";
}

TEST(ServePreemptionTest, NoBatchWorkIsDeletedWhenEvenAllOfItWouldNotMakeRoom) {
  // 70 GiB asked, 10 free, 20 held by batch work: deleting it cannot make room.
  FakeAgent agent(FakeHost{.tenants = {Tenant("inf", false, 50), Tenant("batchjob", true, 20)}});
  PreemptionResult result;
  const Status s = CreateWithPreemption(NodeClient(agent.path()), "sv1-big-1", {"srv"},
                                        Memory("70GiB"), true, 100, &result);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(result.preempted.empty());
  EXPECT_FALSE(result.maybe_created) << "the agent answered";
  EXPECT_FALSE(agent.deleted_any());
  // Where memory is free but the create is refused anyway (compute), the youngest batch tenant
  // still goes: the fallback.
  FakeAgent compute(FakeHost{.tenants = {Tenant("batchjob", true, 20)}, .refusals = 1});
  PreemptionResult fallback;
  EXPECT_TRUE(CreateWithPreemption(NodeClient(compute.path()), "sv1-small-1", {"srv"},
                                   Memory("5GiB"), true, 100, &fallback)
                  .ok());
  EXPECT_EQ(fallback.preempted, std::vector<std::string>{"batchjob"});
}

TEST(ServePreemptionTest, AVictimAnotherStartDeletedFirstIsNotCounted) {
  // The delete finds it gone.
  FakeAgent agent(
      FakeHost{.tenants = {Tenant("batchjob", true, 40)}, .refusals = 1, .delete_status = 404});
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
