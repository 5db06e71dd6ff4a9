// The node agent's core: owns every GPU's ledger, places and admits tenants, starts their
// commands under the interposer, reclaims them when they end, and keeps all of it in SQLite so that
// a restarted agent adopts what the previous one left running. No HTTP here: api.cc maps requests
// onto these calls.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/quantity.h"
#include "common/status.h"
#include "node/config.h"
#include "node/store.h"
#include "node/tenant.h"
#include "runtime/gpu_inventory.h"
#include "runtime/ledger.h"

namespace gpufrac::node {

// An error with the HTTP status class it deserves; code 0 means success.
struct AgentError {
  int code = 0;
  std::string message;
  bool ok() const { return code == 0; }
  static AgentError Invalid(std::string m) { return {400, std::move(m)}; }
  static AgentError NotFound(std::string m) { return {404, std::move(m)}; }
  static AgentError Conflict(std::string m) { return {409, std::move(m)}; }
  static AgentError Internal(std::string m) { return {500, std::move(m)}; }
};

struct CreateTenantRequest {
  std::string name;  // empty: generated
  MemoryAmount memory;
  bool has_memory_limit = false;
  MemoryAmount memory_limit;
  std::string gpu;  // index or UUID; empty: placement decides
  bool has_placement = false;
  Placement placement = Placement::kBinPack;
  std::vector<std::string> command;
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
  uint64_t committed = 0;  // promised or used (the ledger's committed total)
  uint64_t used = 0;       // charged to tenants right now
  int tenants = 0;         // live tenants in the ledger (the agent's and any gpufrac run's)
};

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

  // One reclaim pass (the reaper thread runs it every reap_interval).
  void ReapOnce();

 private:
  struct Tenant {
    TenantRecord record;
    bool main_done = false;     // the command's first process has ended
    bool escalated = false;     // SIGKILL was needed
    bool burst_killed = false;  // killed for not giving borrowed memory back
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
  // When `asked` bytes fit nowhere, a GPU where taking back borrowed memory (used above request)
  // from this agent's tenants would make room, and the borrowers to take it from.
  BurstPlan PlanBurstReclaimLocked(const std::vector<uint64_t>& asked, int only_gpu);
  // Notifies the plan's borrowers, waits up to the deadline for `asked` bytes to be free on the
  // GPU, then kills those still borrowing and waits for their memory. Called without mu_ held.
  void ReclaimBurst(const BurstPlan& plan, uint64_t asked);
  std::string NewIdLocked();

  const NodeConfig config_;
  std::string interposer_;
  std::string setsid_;  // setsid(1), to give each tenant its own process group; empty if missing
  std::vector<GpuInfo> gpus_;
  std::vector<std::unique_ptr<Ledger>> ledgers_;  // by GPU position in gpus_

  std::mutex mu_;
  Store store_;
  std::map<std::string, Tenant> tenants_;
  uint64_t id_counter_ = 0;

  std::mutex reaper_mu_;
  std::condition_variable reaper_wake_;
  bool stopping_ = false;
  std::thread reaper_;
};

}  // namespace gpufrac::node
