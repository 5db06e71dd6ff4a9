// The part of NVML's ABI the node agent adds to runtime/nvml_abi.h: the per-process GPU memory
// query (the backstop) and the device's utilization (compute busy).
// Layouts as in NVIDIA's published nvml.h; the simulated NVML implements the same entry points, so
// the static_asserts below pin the layout both sides rely on. (It belongs beside the rest of the
// NVML ABI in runtime/nvml_abi.h; it lives here while that file is being changed elsewhere.)
#pragma once

#include <cstddef>

#include "runtime/nvml_abi.h"

extern "C" {

// nvmlProcessInfo_v2_t / nvmlProcessInfo_t: what nvmlDeviceGetComputeRunningProcesses_v2 and _v3
// fill in.
typedef struct nvmlProcessInfo_st {
  unsigned int pid;
  unsigned long long usedGpuMemory;  // NVML_VALUE_NOT_AVAILABLE_ULL when NVML cannot tell
  unsigned int gpuInstanceId;        // 0xFFFFFFFF unless MIG is enabled
  unsigned int computeInstanceId;
} nvmlProcessInfo_t;

// nvmlProcessInfo_v1_t: the legacy nvmlDeviceGetComputeRunningProcesses's element.
typedef struct nvmlProcessInfo_v1_st {
  unsigned int pid;
  unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

// nvmlDeviceGetTotalEccErrors(device, errorType, counterType, unsigned long long* count): the
// agent asks for uncorrected errors since the driver loaded, which make a GPU unhealthy.
enum { NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1, NVML_VOLATILE_ECC = 0 };

// nvmlDeviceGetUtilizationRates: percent of the last sample period (1/6 s to 1 s, by product)
// during which a kernel ran (gpu), or device memory was read or written (memory).
typedef struct nvmlUtilization_st {
  unsigned int gpu;
  unsigned int memory;
} nvmlUtilization_t;

}  // extern "C"

// NVML_VALUE_NOT_AVAILABLE (-1) as it reads in the 64-bit usedGpuMemory field.
constexpr unsigned long long kNvmlValueNotAvailable = ~0ull;
constexpr unsigned int kNvmlNoInstance = 0xFFFFFFFFu;

static_assert(sizeof(nvmlProcessInfo_t) == 24 && offsetof(nvmlProcessInfo_t, usedGpuMemory) == 8 &&
                  offsetof(nvmlProcessInfo_t, gpuInstanceId) == 16 &&
                  offsetof(nvmlProcessInfo_t, computeInstanceId) == 20,
              "nvmlProcessInfo_t must match NVIDIA's layout");
static_assert(sizeof(nvmlProcessInfo_v1_t) == 16,
              "nvmlProcessInfo_v1_t must match NVIDIA's layout");
static_assert(sizeof(nvmlUtilization_t) == 8, "nvmlUtilization_t must match NVIDIA's layout");
