#include "node/placement.h"

#include <algorithm>
#include <cstdio>

#include "common/human_bytes.h"

namespace gpufrac::node {
namespace {

// The ledger's own slack for summing compute shares.
constexpr double kComputeSlack = 1e-9;

std::string Share(double share) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.3f", share);
  return buf;
}

}  // namespace

uint64_t RequestBytes(const PlacementRequest& r, uint64_t total_bytes) {
  return r.request.Resolve(total_bytes);
}

uint64_t LimitBytes(const PlacementRequest& r, uint64_t total_bytes) {
  if (!r.limit.is_fraction && r.limit.bytes == 0) return RequestBytes(r, total_bytes);
  return r.limit.Resolve(total_bytes);
}

double ComputeRequest(const PlacementRequest& r, uint64_t total_bytes) {
  if (r.compute_request >= 0) return r.compute_request;
  if (total_bytes == 0) return 0;
  // At most the whole GPU: a request larger than the card is refused for its memory, not for a
  // compute share above 1.
  return std::min(
      1.0, static_cast<double>(RequestBytes(r, total_bytes)) / static_cast<double>(total_bytes));
}

double ComputeLimit(const PlacementRequest& r, uint64_t total_bytes) {
  if (r.compute_strict) return ComputeRequest(r, total_bytes);
  return r.compute_limit >= 0 ? r.compute_limit : 1.0;
}

std::string RequestProblem(const PlacementRequest& r, uint64_t total_bytes) {
  const uint64_t request = RequestBytes(r, total_bytes);
  const uint64_t limit = LimitBytes(r, total_bytes);
  // Sizes below a byte are refused when parsed; a fraction that small only shows here.
  if (request == 0)
    return "memory: the fraction resolves to 0 bytes on a " + Human(total_bytes) + " card";
  if (limit < request) {
    return "memory_limit: " + Human(limit) + " is below the request " + Human(request);
  }
  if (ComputeLimit(r, total_bytes) < ComputeRequest(r, total_bytes)) {
    return "compute_limit: " + Share(ComputeLimit(r, total_bytes)) +
           " is below the compute request " + Share(ComputeRequest(r, total_bytes));
  }
  return "";
}

PlacementResult Place(const PlacementRequest& request, const std::vector<GpuLoad>& gpus) {
  struct Fit {
    int index;
    uint64_t free_after;
  };
  std::vector<Fit> fits;
  std::string refusal;
  PlacementResult result;
  for (const GpuLoad& g : gpus) {
    if (request.gpu >= 0 && g.index != request.gpu) continue;
    const uint64_t asked = RequestBytes(request, g.total_bytes);
    const uint64_t limit = LimitBytes(request, g.total_bytes);
    const uint64_t free_bytes =
        g.committed_bytes < g.total_bytes ? g.total_bytes - g.committed_bytes : 0;
    const double compute = ComputeRequest(request, g.total_bytes);
    const bool compute_fits = g.compute_promised + compute <= 1 + kComputeSlack;
    std::string why;
    if (!g.unhealthy.empty()) {
      why = "unhealthy (" + g.unhealthy + ")";
    } else if (limit > g.total_bytes) {
      why = "limit " + Human(limit) + " exceeds the card's " + Human(g.total_bytes);
    } else if (std::string problem = RequestProblem(request, g.total_bytes); !problem.empty()) {
      why = problem;
    } else if (asked > free_bytes) {
      why = "asked " + Human(asked) + ", free " + Human(free_bytes) + " of " + Human(g.total_bytes);
      // Reclaiming borrowed memory is for a shortage of memory alone: were compute short too, the
      // borrowers would be killed for a request refused anyway.
      if (compute_fits) result.short_of_memory.push_back(g.index);
    } else if (!compute_fits) {
      why = "compute asked " + Share(compute) + ", " +
            Share(std::max(0.0, 1 - g.compute_promised)) + " of the GPU not yet guaranteed";
    } else {
      fits.push_back({g.index, free_bytes - asked});
      continue;
    }
    refusal +=
        (refusal.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(g.index) + ": " + why;
  }
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
