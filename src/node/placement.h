// Where a new fraction goes: a pure function of the GPUs' committed memory, so that it is tested
// without any GPU, ledger or process.
//
//   bin-pack (default): among GPUs where the request fits, the one with the least free memory, so
//                       that partly used GPUs fill up first and whole GPUs stay free.
//   spread:             the one with the most free memory.
//   explicit GPU:       only that one.
//
// An unhealthy GPU (NVML reports uncorrected memory errors, or stopped answering) gets nothing,
// and neither does one where the request is not valid as it resolves there (a limit in bytes below
// a fractional request, on a smaller card) or where its compute guarantee does not fit.
//
// Free means neither promised to nor used by any tenant (total - committed, as the ledger keeps
// it), so placement never over-commits requests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/quantity.h"
#include "node/config.h"

namespace gpufrac::node {

struct GpuLoad {
  int index = 0;
  uint64_t total_bytes = 0;
  uint64_t committed_bytes = 0;
  std::string unhealthy;        // why nothing may be placed on it (NVML's health); empty: healthy
  double compute_promised = 0;  // compute guaranteed to its tenants, a share of the GPU
};

struct PlacementRequest {
  MemoryAmount request;
  MemoryAmount limit;  // is_fraction=false, bytes=0: the request
  Placement policy = Placement::kBinPack;
  int gpu = -1;                 // >= 0: only this GPU
  double compute_request = -1;  // < 0: the memory request's share of the card
  double compute_limit = -1;    // < 0: 1 (fair), the request (strict)
  bool compute_strict = false;
};

struct PlacementResult {
  // GPUs to try, best first (admission into the ledger may still lose a race; then the next).
  std::vector<int> candidates;
  // When empty: per GPU, why it was refused ("GPU 0: asked 60.0GiB, free 20.0GiB of 80.0GiB").
  std::string refusal;
  // GPUs refused only for want of free memory: where taking back borrowed memory could make room.
  std::vector<int> short_of_memory;
};

// The request and limit in bytes on a GPU of `total_bytes`.
uint64_t RequestBytes(const PlacementRequest& r, uint64_t total_bytes);
uint64_t LimitBytes(const PlacementRequest& r, uint64_t total_bytes);
// The compute request and limit on a GPU of `total_bytes` (the default request follows memory).
double ComputeRequest(const PlacementRequest& r, uint64_t total_bytes);
double ComputeLimit(const PlacementRequest& r, uint64_t total_bytes);
// Why the request is not valid as it resolves on a GPU of `total_bytes` (a limit below its
// request), naming the field; empty when it is. A request invalid on every GPU it may go to is
// the caller's mistake; one invalid on some GPUs only just cannot go there.
std::string RequestProblem(const PlacementRequest& r, uint64_t total_bytes);

PlacementResult Place(const PlacementRequest& request, const std::vector<GpuLoad>& gpus);

}  // namespace gpufrac::node
