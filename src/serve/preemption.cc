#include "serve/preemption.h"

#include <algorithm>

#include "common/quantity.h"
#include "runtime/gpu_inventory.h"

namespace gpufrac::serve {
namespace {

bool Running(const TenantInfo& t) { return t.batch && t.state == "running"; }

bool Younger(const TenantInfo& a, const TenantInfo& b) { return a.created_ms > b.created_ms; }

constexpr int kAnyGpu = -1;
constexpr int kNoGpu = -2;

// The index of the GPU a pinned share must land on, found by the agent's own selector rules
// (FindGpu: an index, or a UUID prefix); kAnyGpu when unpinned, kNoGpu when the pin names no GPU
// of this host.
int PinnedGpu(const GpuShare& share, const std::vector<GpuRoom>& gpus) {
  if (share.gpu.empty()) return kAnyGpu;
  std::vector<GpuInfo> inventory;
  for (const GpuRoom& g : gpus) inventory.push_back({g.index, g.uuid, "", g.total});
  GpuInfo pinned;
  return FindGpu(inventory, share.gpu, &pinned).ok() ? pinned.index : kNoGpu;
}

}  // namespace

std::vector<std::string> PlanPreemption(const GpuShare& share, const std::vector<GpuRoom>& gpus,
                                        const std::vector<TenantInfo>& tenants) {
  MemoryAmount amount;
  if (ParseMemoryAmount(share.memory.c_str(), &amount) != ParseError::kNone) return {};
  const int pinned = PinnedGpu(share, gpus);
  std::vector<std::string> best;
  bool found = false;
  for (const GpuRoom& gpu : gpus) {
    if (pinned != kAnyGpu && gpu.index != pinned) continue;
    const uint64_t need = amount.Resolve(gpu.total);
    if (need <= gpu.free) continue;  // memory is not what stops it here
    std::vector<TenantInfo> on_gpu;
    for (const TenantInfo& t : tenants) {
      if (Running(t) && t.gpu == gpu.index) on_gpu.push_back(t);
    }
    std::sort(on_gpu.begin(), on_gpu.end(), Younger);
    uint64_t room = gpu.free;
    std::vector<std::string> victims;
    for (const TenantInfo& t : on_gpu) {
      if (room >= need) break;
      room += t.committed;
      victims.push_back(t.id);
    }
    if (room < need) continue;
    if (!found || victims.size() < best.size()) {
      best = victims;
      found = true;
    }
  }
  return best;
}

std::vector<std::string> FallbackVictims(const GpuShare& share, const std::vector<GpuRoom>& gpus,
                                         const std::vector<TenantInfo>& tenants,
                                         const std::vector<std::string>& skip) {
  const int pinned = PinnedGpu(share, gpus);
  std::vector<TenantInfo> victims;
  for (const TenantInfo& t : tenants) {
    if (!Running(t) || std::find(skip.begin(), skip.end(), t.id) != skip.end()) continue;
    // Unpinned, any batch tenant may go, whatever GPU the listing says it is on.
    if (pinned == kAnyGpu || t.gpu == pinned) victims.push_back(t);
  }
  std::sort(victims.begin(), victims.end(), Younger);
  std::vector<std::string> ids;
  for (const TenantInfo& t : victims) ids.push_back(t.id);
  return ids;
}

bool MemoryFitsSomewhere(const GpuShare& share, const std::vector<GpuRoom>& gpus) {
  MemoryAmount amount;
  if (ParseMemoryAmount(share.memory.c_str(), &amount) != ParseError::kNone) return false;
  const int pinned = PinnedGpu(share, gpus);
  for (const GpuRoom& gpu : gpus) {
    if (pinned != kAnyGpu && gpu.index != pinned) continue;
    if (amount.Resolve(gpu.total) <= gpu.free) return true;
  }
  return false;
}

Status CreateWithPreemption(const NodeClient& node, const std::string& name,
                            const std::vector<std::string>& command, const GpuShare& share,
                            bool allow_preemption, int64_t preempt_grace_ms,
                            PreemptionResult* result) {
  bool conflict = false, unanswered = false;
  auto create = [&] {
    bool invalid = false;
    Status created =
        node.CreateTenant(name, command, share, &result->created, &conflict, &unanswered, &invalid);
    result->maybe_created = result->maybe_created || unanswered;
    result->invalid = invalid;
    return created;
  };
  Status s = create();
  if (s.ok() || !conflict || share.batch || !allow_preemption) return s;
  std::vector<TenantInfo> tenants;
  std::vector<GpuRoom> gpus;
  if (!node.ListTenants(&tenants).ok() || !node.ListGpus(&gpus).ok()) return s;
  // Refused because the name is taken, not for room: deleting batch work would not help.
  for (const TenantInfo& t : tenants) {
    if (t.id == name) return s;
  }
  // Only a delete that found its victim counts: another replica's start may have taken it first.
  auto preempt = [&](const std::string& id) {
    bool existed = false;
    const bool ok = node.DeleteTenant(id, preempt_grace_ms, &existed).ok();
    if (ok && existed) result->preempted.push_back(id);
    return ok;
  };
  const std::vector<std::string> plan = PlanPreemption(share, gpus, tenants);
  if (!plan.empty()) {
    for (const std::string& id : plan) preempt(id);
    s = create();
    if (s.ok() || !conflict) return s;
  } else if (!MemoryFitsSomewhere(share, gpus)) {
    return s;  // no GPU has the memory even with every batch tenant gone: none is deleted
  }
  // Memory is not (or no longer) what stops it (compute shares): youngest batch tenant first,
  // retrying after each.
  for (const std::string& victim : FallbackVictims(share, gpus, tenants, plan)) {
    if (!preempt(victim)) continue;
    s = create();
    if (s.ok() || !conflict) return s;
  }
  return s;
}

}  // namespace gpufrac::serve
