#include "runtime/run_session.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "runtime/gpu_inventory.h"
#include "runtime/ledger.h"
#include "runtime/tenant_process.h"

namespace gpufrac {
namespace {

// How often the supervisor reclaims what dead tenant processes held: well inside the 1 s promise.
constexpr auto kReapInterval = std::chrono::milliseconds(100);

std::atomic<pid_t> g_child{0};

std::string Human(uint64_t bytes) {
  char buf[32];
  FormatBytes(bytes, buf, sizeof buf);
  return buf;
}

void ForwardSignal(int signal_number) {
  const pid_t child = g_child.load();
  if (child > 0) kill(child, signal_number);
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

  std::vector<GpuInfo> candidates;
  if (request.gpu.empty()) {
    candidates = gpus;
  } else {
    GpuInfo gpu;
    if (Status s = FindGpu(gpus, request.gpu, &gpu); !s.ok()) return s;
    candidates.push_back(gpu);
  }

  TenantSpec spec;
  const std::string tenant =
      request.tenant.empty() ? "run-" + std::to_string(getpid()) : request.tenant;
  if (tenant.size() >= sizeof spec.name) {
    return Status::Error("tenant name longer than " + std::to_string(sizeof spec.name - 1) +
                         " characters");
  }
  snprintf(spec.name, sizeof spec.name, "%s", tenant.c_str());

  Ledger ledger;
  GpuInfo chosen;
  int index = -1;
  std::string refusals;
  for (const GpuInfo& gpu : candidates) {
    spec.memory_request = request.memory_request.Resolve(gpu.total_bytes);
    spec.memory_limit = request.has_memory_limit ? request.memory_limit.Resolve(gpu.total_bytes)
                                                 : spec.memory_request;
    if (spec.memory_limit < spec.memory_request) {
      return Status::Error("memory limit " + Human(spec.memory_limit) + " is below the request " +
                           Human(spec.memory_request));
    }
    if (spec.memory_request > gpu.total_bytes || spec.memory_limit > gpu.total_bytes) {
      refusals += (refusals.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(gpu.index) +
                  " has " + Human(gpu.total_bytes) + " in all";
      continue;
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
    if (!ledger.OpenAsOwner(gpu.uuid.c_str(), gpu.total_bytes)) {
      return Status::Error("cannot open the ledger of GPU " + std::to_string(gpu.index) + ": " +
                           strerror(errno));
    }
    char why[256] = {};
    if (ledger.RegisterTenant(spec, getpid(), &index, why, sizeof why)) {
      chosen = gpu;
      break;
    }
    refusals += (refusals.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(gpu.index) +
                ": " + why;
    ledger.Close();
  }
  if (index < 0) {
    return Status::Error("request " + Human(spec.memory_request) + " does not fit: " + refusals);
  }
  const uint64_t generation = ledger.limits()->tenants[index].generation;

  std::string error;
  const pid_t child = SpawnTenantProcess(request.command,
                                         ChildEnvironment(interposer, tenant, chosen.uuid), &error);
  if (child < 0) {
    ledger.UnregisterTenant(index, generation);
    return Status::Error(error);
  }
  g_child.store(child);
  struct sigaction forward {};
  forward.sa_handler = ForwardSignal;
  sigemptyset(&forward.sa_mask);
  forward.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaction(sig, &forward, nullptr);

  // Reclaims the memory of tenant processes that die (SIGKILL included) while the command runs.
  std::mutex mu;
  std::condition_variable wake;
  bool done = false;
  std::thread reaper([&] {
    std::unique_lock lock(mu);
    while (!done) {
      ledger.ReapDead();
      wake.wait_for(lock, kReapInterval);
    }
  });
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  {
    std::lock_guard lock(mu);
    done = true;
  }
  wake.notify_one();
  reaper.join();
  ledger.UnregisterTenant(index, generation);
  *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return Status::Ok();
}

}  // namespace gpufrac
