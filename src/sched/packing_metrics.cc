#include "sched/packing_metrics.h"

#include <set>
#include <utility>
#include <vector>

#include "sched/ffd.h"

namespace gpufrac::sched {

// Share of all GPU memory that is free on GPUs no pending workload fits (only GPU size is
// looked at, not selectors or node CPU). Zero when nothing is pending: then nothing is stranded.
double StrandedShare(const ClusterState& state) {
  // Distinct pending GPU shapes per pool, as (milli, memory) pairs.
  std::vector<std::set<std::pair<int64_t, uint64_t>>> shapes(state.pools().size());
  bool any = false;
  for (QueueId q = 0; q < state.queue_count(); ++q) {
    for (const PendingKey& key : state.pending(q)) {
      const WorkloadSpec& spec = state.workload(key.id).spec;
      if (spec.gpu.kind == GpuRequestKind::kNoGpu) continue;
      for (size_t p = 0; p < state.pools().size(); ++p) {
        if (!spec.gpu_type.empty() && state.pools()[p].type != spec.gpu_type) continue;
        int64_t milli = kMilliPerGpu;
        uint64_t memory = state.pools()[p].memory;
        if (spec.gpu.IsFraction() &&
            !state.FractionNeed(spec.gpu, static_cast<int32_t>(p), &milli, &memory)) {
          continue;
        }
        shapes[p].insert({milli, memory});
        any = true;
      }
    }
  }
  if (!any) return 0;
  double stranded = 0;
  double total = 0;
  for (int32_t g = 0; g < state.gpu_count(); ++g) {
    const GpuState& gpu = state.gpu(g);
    total += static_cast<double>(gpu.memory);
    if (gpu.free_milli == 0) continue;
    bool fits = false;
    for (const auto& [milli, memory] : shapes[gpu.pool]) {
      if (milli <= gpu.free_milli && memory <= gpu.free_memory) {
        fits = true;
        break;
      }
    }
    if (!fits) stranded += static_cast<double>(gpu.free_memory);
  }
  return total > 0 ? stranded / total : 0;
}

// GPUs in use now divided by the GPUs a first-fit-decreasing packing of the same running
// workloads would use, per pool (1.0: as tight as FFD).
double FfdRatio(const ClusterState& state) {
  int used = 0;
  int ffd = 0;
  std::vector<std::vector<int64_t>> items(state.pools().size());
  std::vector<int> whole(state.pools().size(), 0);
  for (int32_t g = 0; g < state.gpu_count(); ++g) {
    const GpuState& gpu = state.gpu(g);
    if (gpu.free_milli == kMilliPerGpu) continue;
    ++used;
    for (WorkloadId t : gpu.tenants) {
      for (const GpuSlice& s : state.workload(t).placement.slices) {
        if (s.gpu != g) continue;
        if (s.milli == kMilliPerGpu) {
          ++whole[gpu.pool];
        } else {
          items[gpu.pool].push_back(s.milli);
        }
      }
    }
  }
  for (size_t p = 0; p < items.size(); ++p) {
    ffd += whole[p] + FirstFitDecreasingBins(items[p], kMilliPerGpu);
  }
  return ffd > 0 ? static_cast<double>(used) / ffd : 1;
}

}  // namespace gpufrac::sched
