#include "runtime/run_session.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "common/human_bytes.h"
#include "runtime/gpu_inventory.h"
#include "runtime/ledger.h"
#include "runtime/tenant_process.h"

namespace gpufrac {
namespace {

// How often the supervisor reclaims what dead tenant processes held: well inside the 1 s promise.
constexpr auto kReapInterval = std::chrono::milliseconds(100);

std::atomic<pid_t> g_child{0};
// A signal that arrived after the command exited, for the processes it left running.
std::atomic<int> g_signal_for_leftovers{0};

// The tenant admitted on one GPU's ledger.
struct Registration {
  Ledger ledger;
  GpuInfo gpu;
  int index = -1;
  uint64_t generation = 0;
};

// Sizes the tenant for `gpu` and registers it there. An error Status for a request that is wrong
// on any GPU; OK with `refusal` set when only this GPU cannot take it.
Status Admit(const RunRequest& request, const TenantSpec& base, const GpuInfo& gpu, Registration* r,
             std::string* refusal) {
  TenantSpec spec = base;
  spec.memory_request = request.memory_request.Resolve(gpu.total_bytes);
  spec.memory_limit = request.has_memory_limit ? request.memory_limit.Resolve(gpu.total_bytes)
                                               : spec.memory_request;
  if (spec.memory_limit < spec.memory_request) {
    const std::string why = "memory limit " + Human(spec.memory_limit) + " is below the request " +
                            Human(spec.memory_request);
    // A size against a fraction (--memory 30GiB --memory-limit 0.25) depends on the card: a
    // larger GPU may take it. Two of a kind are wrong everywhere.
    if (request.memory_request.is_fraction != request.memory_limit.is_fraction) {
      *refusal = ": " + why;
      return Status::Ok();
    }
    return Status::Error(why);
  }
  if (spec.memory_request > gpu.total_bytes || spec.memory_limit > gpu.total_bytes) {
    // Name what is too large: a request that fits with a limit beyond the card is the limit's
    // fault, and the user must not go looking at the request.
    *refusal = " has " + Human(gpu.total_bytes) + " in all, less than the " +
               (spec.memory_request > gpu.total_bytes ? "request" : "limit ") +
               (spec.memory_request > gpu.total_bytes ? "" : Human(spec.memory_limit));
    return Status::Ok();
  }
  // Compute: by default the same share of the GPU as of its memory; fair mode may burst to the
  // whole GPU, strict mode is held to its request.
  spec.compute_request = request.compute_request >= 0 ? request.compute_request
                                                      : static_cast<double>(spec.memory_request) /
                                                            static_cast<double>(gpu.total_bytes);
  spec.compute_mode = request.compute_mode;
  spec.priority = request.priority;
  spec.compute_limit = request.compute_mode == ComputeMode::kStrict ? spec.compute_request
                       : request.compute_limit >= 0                 ? request.compute_limit
                                                                    : 1.0;
  if (spec.compute_limit < spec.compute_request) {
    return Status::Error("compute limit " + std::to_string(spec.compute_limit) +
                         " is below the compute request " + std::to_string(spec.compute_request));
  }
  if (!r->ledger.OpenAsOwner(gpu.uuid.c_str(), gpu.total_bytes)) {
    return Status::Error("cannot open the ledger of GPU " + std::to_string(gpu.index) + ": " +
                         strerror(errno));
  }
  char why[256] = {};
  if (!r->ledger.RegisterTenant(spec, getpid(), &r->index, why, sizeof why)) {
    *refusal = std::string(": ") + why;
    r->ledger.Close();
    return Status::Ok();
  }
  r->gpu = gpu;
  r->generation = r->ledger.limits()->tenants[r->index].generation;
  return Status::Ok();
}

// Passes a signal to the command, and keeps a stopping one for what the command leaves running:
// a shell killed by SIGTERM leaves its children here, and a supervisor that sends one SIGTERM
// expects everything to stop (WaitForLeftovers sends it on to them). A SIGHUP to a running
// command often means "reload", so it is not held against its leftovers.
void ForwardSignal(int signal_number) {
  const pid_t child = g_child.load();
  if (child > 0) kill(child, signal_number);
  if (child <= 0 || signal_number != SIGHUP) g_signal_for_leftovers.store(signal_number);
}

constexpr int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

void HandleForwardedSignals(int flags) {
  struct sigaction forward {};
  forward.sa_handler = ForwardSignal;
  sigemptyset(&forward.sa_mask);
  forward.sa_flags = flags;
  for (int sig : kForwardedSignals) sigaction(sig, &forward, nullptr);
}

// Starts `body` on a thread that never takes the forwarded signals: they must interrupt the main
// thread's wait (WaitForLeftovers).
template <typename Body>
std::thread StartWithoutForwardedSignals(Body body) {
  sigset_t forwarded, old;
  sigemptyset(&forwarded);
  for (int sig : kForwardedSignals) sigaddset(&forwarded, sig);
  pthread_sigmask(SIG_BLOCK, &forwarded, &old);
  std::thread thread(std::move(body));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return thread;
}

// The parent pid in /proc/PID/stat (field 4, after the parenthesized command name), or -1.
pid_t ParentOf(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[512];
  const ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = '\0';
  const char* after_name = strrchr(text, ')');
  char state = 0;
  int parent = -1;
  if (after_name == nullptr || sscanf(after_name + 1, " %c %d", &state, &parent) != 2) return -1;
  return parent;
}

void SignalChildren(int signal_number) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  const pid_t self = getpid();
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(atoi(entry->d_name));
    if (pid > 0 && ParentOf(pid) == self) kill(pid, signal_number);
  }
  closedir(proc);
}

// Waits for the command, reaping meanwhile the orphans it leaves here (this process is their
// subreaper): left unreaped they would pile up as zombies for the command's whole life.
int WaitForCommand(pid_t child) {
  int status = 0;
  for (;;) {
    int st = 0;
    const pid_t ended = waitpid(-1, &st, 0);
    if (ended == child) return st;
    if (ended < 0 && errno != EINTR) return status;  // ECHILD: cannot happen while child lives
  }
}

// Waits for what the command left running. This process is a child subreaper, so every
// descendant that outlives the command becomes its child; they may hold GPU memory under the
// tenant, which must stay registered (and reaped) until the last of them is gone. Signals are
// passed on to them, the last one forwarded to the command first. Polls rather than blocks, so
// that a signal arriving between the check and the wait cannot be missed.
void WaitForLeftovers() {
  constexpr timespec kPoll = {0, 20'000'000};
  bool announced = false;
  for (;;) {
    if (const int sig = g_signal_for_leftovers.exchange(0); sig != 0) SignalChildren(sig);
    const pid_t ended = waitpid(-1, nullptr, WNOHANG);
    if (ended < 0 && errno == ECHILD) return;  // none left
    if (ended > 0) continue;                   // one gone: look again at once
    if (!announced) {
      fprintf(stderr,
              "gpufrac run: the command exited; waiting for the processes it left running\n");
      announced = true;
    }
    nanosleep(&kPoll, nullptr);
  }
}

}  // namespace

Status RunTenant(const RunRequest& request, int* exit_status) {
  if (request.command.empty()) return Status::Error("missing command: give it after --");
  const std::string interposer =
      request.interposer_path.empty() ? DefaultInterposerPath() : request.interposer_path;
  struct stat st;
  if (interposer.empty() || stat(interposer.c_str(), &st) != 0) {
    return Status::Error("interposer not found at '" + interposer + "' (set GPUFRAC_LIBRARY)");
  }
  std::vector<GpuInfo> gpus;
  if (Status s = ListGpus(&gpus); !s.ok()) return s;
  if (gpus.empty()) return Status::Error("this host has no GPU");

  TenantSpec base;
  const std::string tenant =
      request.tenant.empty() ? "run-" + std::to_string(getpid()) : request.tenant;
  if (tenant.size() >= sizeof base.name) {
    return Status::Error("tenant name longer than " + std::to_string(sizeof base.name - 1) +
                         " characters");
  }
  snprintf(base.name, sizeof base.name, "%s", tenant.c_str());

  // --gpu 0,1: one tenant over several GPUs (tensor parallel), admitted on every one of them.
  std::vector<GpuInfo> gang;
  for (size_t from = 0; !request.gpu.empty() && from <= request.gpu.size();) {
    size_t comma = request.gpu.find(',', from);
    if (comma == std::string::npos) comma = request.gpu.size();
    GpuInfo gpu;
    if (Status s = FindGpu(gpus, request.gpu.substr(from, comma - from), &gpu); !s.ok()) return s;
    for (const GpuInfo& other : gang) {
      if (other.uuid == gpu.uuid) return Status::Error("GPU " + gpu.uuid + " is named twice");
    }
    gang.push_back(gpu);
    from = comma + 1;
  }
  if (gang.size() > static_cast<size_t>(kMaxGangGpus)) {
    return Status::Error("a tenant spans at most " + std::to_string(kMaxGangGpus) + " GPUs");
  }
  if (gang.size() > 1) {
    base.gang_size = static_cast<uint32_t>(gang.size());
    for (size_t i = 0; i < gang.size(); ++i) {
      snprintf(base.gang[i], sizeof base.gang[i], "%s", gang[i].uuid.c_str());
    }
  }

  std::vector<std::unique_ptr<Registration>> registrations;
  auto unregister_all = [&registrations] {
    for (auto& r : registrations) r->ledger.UnregisterTenant(r->index, r->generation);
  };
  if (gang.size() > 1) {
    for (const GpuInfo& gpu : gang) {
      auto r = std::make_unique<Registration>();
      std::string refusal;
      Status s = Admit(request, base, gpu, r.get(), &refusal);
      if (!s.ok() || !refusal.empty()) {
        unregister_all();
        return s.ok() ? Status::Error("request does not fit: GPU " + std::to_string(gpu.index) +
                                      refusal)
                      : s;
      }
      registrations.push_back(std::move(r));
    }
  } else {
    const std::vector<GpuInfo>& candidates = gang.empty() ? gpus : gang;
    std::string refusals;
    for (const GpuInfo& gpu : candidates) {
      auto r = std::make_unique<Registration>();
      std::string refusal;
      if (Status s = Admit(request, base, gpu, r.get(), &refusal); !s.ok()) return s;
      if (refusal.empty()) {
        registrations.push_back(std::move(r));
        break;
      }
      refusals += (refusals.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(gpu.index) +
                  refusal;
    }
    if (registrations.empty()) {
      // As resolved on the first GPU tried (a fraction's size differs from card to card).
      const uint64_t card = candidates[0].total_bytes;
      std::string asked = "request " + Human(request.memory_request.Resolve(card));
      if (request.has_memory_limit) {
        asked += " (limit " + Human(request.memory_limit.Resolve(card)) + ")";
      }
      return Status::Error(asked + " does not fit: " + refusals);
    }
  }
  std::string visible;
  for (const auto& r : registrations) visible += (visible.empty() ? "" : ",") + r->gpu.uuid;

  // Descendants that outlive the command are reparented here rather than to init, so that the
  // tenant can be kept until they are gone (WaitForLeftovers).
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    unregister_all();
    return Status::Error(std::string("cannot become a child subreaper: ") + strerror(errno));
  }
  SpawnFailure failure;
  const pid_t child =
      SpawnTenantProcess(request.command, ChildEnvironment(interposer, tenant, visible), &failure);
  if (child < 0) {
    unregister_all();
    return Status::Error(failure.message);
  }
  g_child.store(child);
  HandleForwardedSignals(SA_RESTART);

  // Reclaims the memory of tenant processes that die (SIGKILL included) while the command runs.
  std::mutex mu;
  std::condition_variable wake;
  bool done = false;
  std::thread reaper = StartWithoutForwardedSignals([&] {
    std::unique_lock lock(mu);
    while (!done) {
      for (auto& r : registrations) r->ledger.ReapDead();
      wake.wait_for(lock, kReapInterval);
    }
  });
  const int status = WaitForCommand(child);
  g_child.store(0);  // reaped: its pid may be reused
  WaitForLeftovers();
  {
    std::lock_guard lock(mu);
    done = true;
  }
  wake.notify_one();
  reaper.join();
  unregister_all();
  *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return Status::Ok();
}

}  // namespace gpufrac
