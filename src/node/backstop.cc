#include "node/backstop.h"

#include <map>

#include "common/human_bytes.h"
#include "common/quantity.h"

namespace gpufrac::node {
const char* BackstopReasonName(BackstopReason r) {
  return r == BackstopReason::kOverLimit ? "over_limit" : "no_tenant";
}

std::vector<BackstopFinding> JudgeGpuProcesses(const std::vector<ObservedProcess>& processes,
                                               uint64_t tolerance) {
  struct Total {
    uint64_t used = 0;
    uint64_t processes = 0;
    uint64_t limit = 0;
  };
  std::map<std::string, Total> totals;
  for (const ObservedProcess& p : processes) {
    if (p.tenant.empty()) continue;
    Total& t = totals[p.tenant];
    t.used += p.used_known ? p.used : 0;
    t.processes += 1;
    t.limit = p.tenant_limit;
  }
  std::vector<BackstopFinding> findings;
  for (const ObservedProcess& p : processes) {
    BackstopFinding f;
    f.pid = p.pid;
    f.start_time = p.start_time;
    f.used = p.used;
    f.tenant = p.tenant;
    if (p.tenant.empty()) {
      f.reason = BackstopReason::kNoTenant;
      findings.push_back(f);
      continue;
    }
    const Total& t = totals[p.tenant];
    f.tenant_used = t.used;
    f.allowance = t.limit + tolerance * t.processes;
    if (t.used > f.allowance) {
      f.reason = BackstopReason::kOverLimit;
      findings.push_back(f);
    }
  }
  return findings;
}

std::string DescribeFinding(const BackstopFinding& f, int gpu) {
  const std::string where = "holds " + Human(f.used) + " on GPU " + std::to_string(gpu);
  if (f.reason == BackstopReason::kNoTenant) return where + " and belongs to no tenant";
  return where + "; tenant " + f.tenant + "'s processes hold " + Human(f.tenant_used) +
         ", above its limit and tolerance (" + Human(f.allowance) +
         "): the interposer was bypassed";
}

}  // namespace gpufrac::node
