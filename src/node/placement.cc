#include "node/placement.h"

#include <algorithm>

#include "common/human_bytes.h"

namespace gpufrac::node {
uint64_t RequestBytes(const PlacementRequest& r, uint64_t total_bytes) {
  return r.request.Resolve(total_bytes);
}

uint64_t LimitBytes(const PlacementRequest& r, uint64_t total_bytes) {
  if (!r.limit.is_fraction && r.limit.bytes == 0) return RequestBytes(r, total_bytes);
  return r.limit.Resolve(total_bytes);
}

PlacementResult Place(const PlacementRequest& request, const std::vector<GpuLoad>& gpus) {
  struct Fit {
    int index;
    uint64_t free_after;
  };
  std::vector<Fit> fits;
  std::string refusal;
  for (const GpuLoad& g : gpus) {
    if (request.gpu >= 0 && g.index != request.gpu) continue;
    const uint64_t asked = RequestBytes(request, g.total_bytes);
    const uint64_t limit = LimitBytes(request, g.total_bytes);
    const uint64_t free_bytes =
        g.committed_bytes < g.total_bytes ? g.total_bytes - g.committed_bytes : 0;
    std::string why;
    if (!g.unhealthy.empty()) {
      why = "unhealthy (" + g.unhealthy + ")";
    } else if (limit > g.total_bytes) {
      why = "limit " + Human(limit) + " exceeds the card's " + Human(g.total_bytes);
    } else if (asked > free_bytes) {
      why = "asked " + Human(asked) + ", free " + Human(free_bytes) + " of " + Human(g.total_bytes);
    } else {
      fits.push_back({g.index, free_bytes - asked});
      continue;
    }
    refusal +=
        (refusal.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(g.index) + ": " + why;
  }
  PlacementResult result;
  if (request.gpu >= 0 && fits.empty() && refusal.empty()) {
    result.refusal = "GPU " + std::to_string(request.gpu) + " does not exist";
    return result;
  }
  // Stable: among equals the lower index wins, so placement is deterministic.
  std::stable_sort(fits.begin(), fits.end(), [&](const Fit& a, const Fit& b) {
    return request.policy == Placement::kSpread ? a.free_after > b.free_after
                                                : a.free_after < b.free_after;
  });
  for (const Fit& f : fits) result.candidates.push_back(f.index);
  if (result.candidates.empty())
    result.refusal = refusal.empty() ? "this host has no GPU" : refusal;
  return result;
}

}  // namespace gpufrac::node
