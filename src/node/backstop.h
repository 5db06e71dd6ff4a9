// The NVML backstop's judgement, kept pure so that it can be tested without processes: given the
// processes NVML sees on one GPU and whom each belongs to, which of them break the rules. A tenant
// whose processes together hold more than its limit (plus a per-process tolerance) bypassed the
// interposer; a process that belongs to no tenant should not be on the agent's GPU at all.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gpufrac::node {

enum class BackstopReason { kOverLimit, kNoTenant };
const char* BackstopReasonName(BackstopReason r);  // "over_limit", "no_tenant"

struct ObservedProcess {
  pid_t pid = 0;
  uint64_t start_time = 0;  // with pid, identifies the process (process_identity.h)
  uint64_t used = 0;        // NVML's figure
  bool used_known = true;
  std::string tenant;  // the ledger tenant it belongs to; empty: none
  uint64_t tenant_limit = 0;
};

struct BackstopFinding {
  pid_t pid = 0;
  uint64_t start_time = 0;
  BackstopReason reason = BackstopReason::kNoTenant;
  std::string tenant;
  uint64_t used = 0;         // this process, per NVML
  uint64_t tenant_used = 0;  // all the tenant's processes on the GPU, per NVML
  uint64_t allowance = 0;    // the tenant's limit plus the tolerance per process
};

// Every process that belongs to no tenant, and every process of a tenant whose processes hold more
// than its limit + `tolerance` per process.
std::vector<BackstopFinding> JudgeGpuProcesses(const std::vector<ObservedProcess>& processes,
                                               uint64_t tolerance);

// One line for logs and the API: "holds 4.5GiB on GPU 0 and belongs to no tenant".
std::string DescribeFinding(const BackstopFinding& f, int gpu);

}  // namespace gpufrac::node
