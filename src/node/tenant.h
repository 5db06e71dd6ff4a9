// A tenant as the agent keeps it: where it was placed, what it was promised, its process, and how
// it ended. Plain values, stored in SQLite and turned into JSON at the API edge.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gpufrac::node {

enum class TenantState { kRunning, kStopping, kExited };
const char* StateName(TenantState s);
bool ParseState(const std::string& text, TenantState* s);

struct TenantRecord {
  std::string id;  // also the tenant's name in the GPU's ledger
  int gpu_index = 0;
  std::string gpu_uuid;
  int ledger_index = -1;
  uint64_t generation = 0;
  uint64_t memory_request = 0;
  uint64_t memory_limit = 0;
  std::vector<std::string> command;
  pid_t pid = 0;
  uint64_t pid_start = 0;  // with pid, identifies the process across pid reuse
  TenantState state = TenantState::kRunning;
  bool exit_known = false;  // false when the process was adopted (not our child) or never ran
  int exit_status = 0;      // exit code, or 128 + signal
  std::string reason;       // how it ended, for operators
  int64_t created_ms = 0;   // wall clock, ms since the epoch
  int64_t finished_ms = 0;
  bool adopted = false;  // started by an earlier incarnation of the agent
  // Sent to the command's process when the agent needs memory it borrowed above its request back
  // (0: no notice; it is killed at the deadline if it still holds the memory).
  int burst_signal = 0;
  // Or/and an HTTP hook: "http://IP:PORT/PATH", POSTed {"tenant", "gpu", "give_back_bytes",
  // "deadline_ms"} as the notice.
  std::string burst_hook;
  // Compute share, written into the ledger for the compute-sharing runtime to enforce.
  double compute_request = 0;
  double compute_limit = 1;
  bool compute_strict = false;  // strict: held to the request; fair: may use idle share
  bool batch = false;           // priority: batch, else inference
  // Attach-only: no command; processes started elsewhere join it with `token` (POST /v1/attach).
  bool attach_only = false;
  std::string token;
  // Attach-only: reclaimed once every process that attached has exited (gpufrac run --node),
  // instead of living until deleted.
  bool release_on_exit = false;
  bool ever_attached = false;
  std::vector<std::pair<pid_t, uint64_t>> attached;  // live joined processes: pid, start time
  // How often the agent started the command again after it failed (restart: on-failure).
  bool restart_on_failure = false;
  uint32_t max_restarts = 0;
  uint32_t restarts = 0;
};

// Live figures from the ledger, beside the record.
struct TenantUsageView {
  uint64_t used = 0;
  uint64_t peak = 0;
  uint64_t refusals = 0;
  int processes = 0;
  // Compute, as the compute-sharing runtime keeps it in the ledger.
  uint64_t gpu_time_ns = 0;     // time the tenant held the GPU
  uint64_t throttled_ns = 0;    // time its launches waited for their turn
  uint32_t share_permille = 0;  // its entitled share among busy tenants, last decided
  // NVML's figure for the memory its processes hold (the backstop's last sample); -1: not sampled.
  int64_t nvml_used = -1;
};

}  // namespace gpufrac::node
