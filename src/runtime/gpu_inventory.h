// The host's GPUs as NVML reports them (loaded with dlopen, so gpufrac runs on machines without a
// driver and, with build/lib/sim on LD_LIBRARY_PATH, against the simulated devices).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace gpufrac {

struct GpuInfo {
  int index = 0;
  std::string uuid;
  std::string name;
  uint64_t total_bytes = 0;
};

// Lists the GPUs. Fails with a one-line reason when NVML cannot be loaded or queried.
Status ListGpus(std::vector<GpuInfo>* gpus);

// Finds a GPU by index ("0") or UUID (full, or a unique prefix of at least "GPU-" + 4 characters).
Status FindGpu(const std::vector<GpuInfo>& gpus, const std::string& selector, GpuInfo* gpu);

}  // namespace gpufrac
