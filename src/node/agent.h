// The node agent's core: owns every GPU's ledger, places and admits tenants, starts their
// commands under the interposer, reclaims them when they end, and keeps all of it in SQLite so that
// a restarted agent adopts what the previous one left running. No HTTP here: api.cc maps requests
// onto these calls.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "common/quantity.h"
#include "common/status.h"
#include "node/backstop.h"
#include "node/config.h"
#include "node/nvml_processes.h"
#include "node/store.h"
#include "node/tenant.h"
#include "runtime/gpu_inventory.h"
#include "runtime/ledger.h"
#include "runtime/tenant_process.h"

namespace gpufrac::node {

// After SIGKILL (a delete's grace period or a burst's reclaim deadline ran out), how long the agent
// waits for the kernel to take the tenant's processes.
inline constexpr auto kKillWait = std::chrono::seconds(5);

// An error with the HTTP status class it deserves; code 0 means success.
struct AgentError {
  int code = 0;
  std::string message;
  bool ok() const { return code == 0; }
  static AgentError Invalid(std::string m) { return {400, std::move(m)}; }
  static AgentError NotFound(std::string m) { return {404, std::move(m)}; }
  static AgentError Conflict(std::string m) { return {409, std::move(m)}; }
  static AgentError Internal(std::string m) { return {500, std::move(m)}; }
  // A shortage that may pass (no descriptors, no processes): the same request may succeed later.
  static AgentError Unavailable(std::string m) { return {503, std::move(m)}; }
};

struct CreateTenantRequest {
  std::string name;  // empty: generated
  MemoryAmount memory;
  bool has_memory_limit = false;
  MemoryAmount memory_limit;
  std::string gpu;  // index or UUID; empty: placement decides
  bool has_placement = false;
  Placement placement = Placement::kBinPack;
  std::vector<std::string> command;  // empty: attach-only (processes join with the token)
  bool release_on_exit = false;      // attach-only: reclaimed when its attached processes end
  pid_t attach_pid = 0;              // attach-only: a process that joins at once (gpufrac run)
  bool restart_on_failure = false;   // start the command again when it fails
  uint32_t max_restarts = 0;
  int burst_signal = 0;  // see TenantRecord
  std::string burst_hook;
  double compute_request = -1;  // < 0: the memory request's share of the card
  double compute_limit = -1;    // < 0: 1 in fair mode; strict mode: the request
  bool compute_strict = false;
  bool batch = false;
};

struct TenantView {
  TenantRecord record;
  TenantUsageView usage;
};

struct GpuView {
  GpuInfo info;
  uint64_t committed = 0;    // promised or used (the ledger's committed total)
  uint64_t used = 0;         // charged to tenants right now
  int tenants = 0;           // live tenants in the ledger (the agent's and any gpufrac run's)
  double compute_busy = -1;  // NVML's utilization in [0, 1]; < 0: not sampled
  std::string problem;       // why the GPU is unhealthy (no new tenants); empty: healthy
  int sm_count = 0;          // from the CUDA driver; 0: unknown
};

// What a process needs to run as an attach-only tenant: its environment (the interposer preloaded,
// the tenant's name, its GPU).
struct AttachView {
  TenantRecord record;
  std::vector<std::pair<std::string, std::string>> env;
};

// One offender the NVML backstop found in its last sample.
struct BackstopOffender {
  int gpu = 0;
  BackstopFinding finding;
  bool killed = false;
  int64_t since_ms = 0;  // first seen
};

struct BackstopView {
  BackstopMode mode = BackstopMode::kOff;
  uint32_t interval_ms = 0;
  uint64_t samples = 0;
  double last_sample_ms = 0;  // how long the last pass took (NVML calls, /proc reads, judgement)
  std::string error;          // the last sample's failure, if it failed
  std::vector<BackstopOffender> offenders;
  // Per GPU position, per reason (BackstopReason as index): processes flagged, processes killed.
  std::vector<std::array<uint64_t, 2>> flagged;
  std::vector<std::array<uint64_t, 2>> killed;
  std::vector<uint64_t> unattributed;  // per GPU: bytes NVML sees held by no tenant's processes
};

// Why process `pid` may not join a tenant (it is init, the agent, or an ancestor of the agent,
// which a delete's signals must never reach); empty when it may.
std::string WhyPidCannotJoin(pid_t pid);

class Agent {
 public:
  // Discovers GPUs, opens their ledgers, opens the state database, adopts tenants an earlier
  // agent left, and starts reclaiming.
  static Status Start(const NodeConfig& config, std::unique_ptr<Agent>* out);
  // Stops reclaiming. Tenants keep running: the next agent adopts them.
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  AgentError Create(const CreateTenantRequest& request, TenantView* out);
  std::vector<TenantView> List();
  AgentError Get(const std::string& id, TenantView* out);
  // SIGTERM to the tenant's processes, SIGKILL after `grace_ms` (< 0: the configured grace), then
  // removes the tenant. An exited tenant is simply forgotten.
  AgentError Delete(const std::string& id, int64_t grace_ms, TenantView* out);
  std::vector<GpuView> Gpus();
  // Joins process `pid` to the attach-only tenant holding `token`.
  AgentError Attach(const std::string& token, pid_t pid, AttachView* out);
  BackstopView Backstop();
  // The environment that makes a process one of this tenant's: the interposer preloaded, the
  // tenant's name, only its GPU.
  std::vector<std::pair<std::string, std::string>> TenantEnv(const TenantRecord& r) const;

  // One reclaim pass (the reaper thread runs it every reap_interval).
  void ReapOnce();

 private:
  struct Tenant {
    TenantRecord record;
    bool main_done = false;     // the command's first process has ended
    bool escalated = false;     // SIGKILL was needed
    bool burst_killed = false;  // killed for not giving borrowed memory back
    std::string backstop_kill;  // why the NVML backstop killed its processes, if it did
    // A delete the previous agent did not finish (it died in the grace period): the reaper sends
    // SIGKILL at this time. Unset otherwise: a live delete escalates on its own.
    std::chrono::steady_clock::time_point resumed_kill_at{};
    // A restart whose spawn failed for a passing reason (out of descriptors or processes): tried
    // again at this time, up to kMaxSpawnRetries times in a row.
    int spawn_retries = 0;
    std::chrono::steady_clock::time_point spawn_retry_at{};
  };
  struct Suspect {
    int samples = 0;  // consecutive samples it was found in
    int64_t since_ms = 0;
    bool reported = false;
    bool killed = false;
  };
  struct BurstPlan {
    int gpu = -1;
    std::vector<std::string> victims;  // borrowers, largest excess first
  };

  explicit Agent(const NodeConfig& config) : config_(config) {}
  void Adopt(std::vector<TenantRecord> records);
  Ledger* LedgerFor(const std::string& uuid, int* gpu_index);
  TenantView ViewLocked(const Tenant& t) const;
  int LiveProcessesLocked(const TenantRecord& r) const;
  void SignalLocked(const TenantRecord& r, int sig) const;
  void FinishLocked(Tenant* t);
  void PersistLocked(const TenantRecord& r);
  // When `asked` bytes fit nowhere, a GPU among `short_of_memory` (those that would take the
  // request but for free memory) where taking back borrowed memory (used above request) from this
  // agent's tenants would make room, and the borrowers to take it from.
  BurstPlan PlanBurstReclaimLocked(const std::vector<uint64_t>& asked,
                                   const std::vector<int>& short_of_memory);
  // The compute guaranteed to the live tenants of GPU position `pos` (the agent's and any gpufrac
  // run's), as the ledger will count it at admission.
  double ComputePromisedLocked(size_t pos) const;
  // Notifies the plan's borrowers, waits up to the deadline for `asked` bytes to be free on the
  // GPU, then kills those still borrowing and waits for their memory. A borrower that could not
  // be told (no burst_signal reaching a live process, no burst_hook that answered) is killed at
  // once: only those told are waited for. Called without mu_ held.
  void ReclaimBurst(const BurstPlan& plan, uint64_t asked);
  // SIGKILLs those of `ids` still running above their request and not yet in *killed (the
  // reclaim's own record, so each is killed once per reclaim), adds them to it and marks them
  // killed for borrowed memory.
  void KillBorrowersLocked(const std::vector<std::string>& ids, std::set<std::string>* killed);
  // tenant.burst_notified: `signal` (0: none) and `hook` ("none", the URL, or "failed") reached it.
  void LogNotified(const std::string& id, int gpu, int signal, const std::string& hook) const;
  std::string NewIdLocked();
  std::string NewTokenLocked();
  // restart: on-failure: the command failed on its own (not deleted, not killed by the agent) and
  // has restarts left.
  bool ShouldRestartLocked(const Tenant& t) const;
  bool StartCommandLocked(TenantRecord* r, SpawnFailure* failure);
  // Attach-only tenants: drops attached processes that ended; true when none is left.
  bool PruneAttachedLocked(TenantRecord* r);
  // One NVML pass over every GPU (the NVML thread runs it every backstop.interval): utilization
  // always, the backstop unless it is off.
  void SampleBackstop();
  // Who `pid` on GPU position `gpu` belongs to (a ledger slot, else its ancestry or session).
  ObservedProcess AttributeLocked(size_t gpu, const GpuProcess& p) const;

  const NodeConfig config_;
  std::string interposer_;
  std::string setsid_;  // setsid(1), to give each tenant its own process group; empty if missing
  std::vector<GpuInfo> gpus_;
  std::vector<std::unique_ptr<Ledger>> ledgers_;  // by GPU position in gpus_
  std::vector<int> sm_counts_;                    // by GPU position; 0: unknown

  std::mutex mu_;
  Store store_;
  std::map<std::string, Tenant> tenants_;
  uint64_t id_counter_ = 0;

  // NVML backstop state (mu_).
  std::unique_ptr<NvmlProcesses> nvml_;
  std::map<std::tuple<int, pid_t, uint64_t, int>, Suspect> suspects_;  // gpu, pid, start, reason
  BackstopView backstop_;
  std::map<std::string, uint64_t> nvml_used_;  // tenant id -> NVML bytes, last sample
  std::vector<double> gpu_busy_;               // per GPU position, NVML utilization, -1 unknown
  std::vector<std::string> gpu_problem_;       // per GPU position: why unhealthy; "" healthy
  // Records each GPU's health as NVML reported it and logs the changes.
  void UpdateHealthLocked(const std::vector<std::string>& problems);

  std::mutex reaper_mu_;
  std::condition_variable reaper_wake_;
  bool stopping_ = false;
  std::thread reaper_;
  std::thread backstop_thread_;
};

}  // namespace gpufrac::node
