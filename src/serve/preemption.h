// Batch preemption, the documented policy (docs/serve.md). When the agent refuses an inference
// replica because no GPU has room, batch tenants of the host are deleted to make room:
//   1. Plan by memory: on each GPU the replica may use, the youngest batch tenants (the least work
//      lost) that together free enough memory; the GPU needing the fewest victims wins (ties: the
//      lower index). Only those are deleted, then the create is retried once.
//   2. When no GPU can be freed by memory alone (the refusal was about compute, or the figures
//      moved), batch tenants on the GPUs the replica may use are deleted youngest first, one at a
//      time, retrying after each.
// A replica pinned to a GPU (`gpu:` index or UUID prefix) may use only that one: batch work on
// other GPUs is never deleted for it.
// Inference tenants are never deleted to make room, and batch replicas never preempt anything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "serve/deploy.h"
#include "serve/node_client.h"

namespace gpufrac::serve {

// Step 1 as a pure function: the victims' ids, or none when memory alone cannot make room.
std::vector<std::string> PlanPreemption(const GpuShare& share, const std::vector<GpuRoom>& gpus,
                                        const std::vector<TenantInfo>& tenants);

// Step 2's order: running batch tenants on GPUs the share may use, youngest first, less `skip`.
std::vector<std::string> FallbackVictims(const GpuShare& share, const std::vector<GpuRoom>& gpus,
                                         const std::vector<TenantInfo>& tenants,
                                         const std::vector<std::string>& skip);

struct PreemptionResult {
  TenantInfo created;
  std::vector<std::string> preempted;  // tenants deleted to make room
  bool maybe_created = false;  // a create got no answer: the tenant may exist, delete it by name
  // The agent refused the spec itself (400): a configuration error that no retry can fix.
  bool invalid = false;
};
// Whether some GPU the share may use has its memory free now (so memory is not what refuses it).
bool MemoryFitsSomewhere(const GpuShare& share, const std::vector<GpuRoom>& gpus);

Status CreateWithPreemption(const NodeClient& node, const std::string& name,
                            const std::vector<std::string>& command, const GpuShare& share,
                            bool allow_preemption, int64_t preempt_grace_ms,
                            PreemptionResult* result);

}  // namespace gpufrac::serve
