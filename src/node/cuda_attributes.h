// What NVML does not say about a full GPU: its SM count (nvmlDeviceGetAttributes answers only for
// MIG devices). Read once at start from the CUDA driver, loaded with dlopen like NVML, matched to
// NVML's GPUs by UUID. Initializing the driver creates no context, so the agent does not appear
// among the GPU's processes.
#pragma once

#include <map>
#include <string>

namespace gpufrac::node {

// SM count per GPU UUID ("GPU-…"); empty when the driver cannot be loaded or initialized (the
// counts are then reported as unknown). GPUs hidden by CUDA_VISIBLE_DEVICES are missing.
std::map<std::string, int> SmCountsByUuid();

}  // namespace gpufrac::node
