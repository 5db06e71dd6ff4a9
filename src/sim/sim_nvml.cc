// The NVML stand-in (built as libnvidia-ml.so.1 beside the simulated libcuda.so.1): device
// discovery, memory and per-process memory, over the same shared state as the simulated driver.
// Like real NVML it ignores CUDA_VISIBLE_DEVICES and numbers devices physically.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "node/nvml_process_abi.h"
#include "runtime/nvml_abi.h"
#include "runtime/process_identity.h"
#include "sim/sim_state.h"

#define NVML_EXPORT extern "C" __attribute__((visibility("default")))

namespace gpufrac::sim {
namespace {

std::mutex nvml_mu;
int nvml_refs = 0;

nvmlReturn_t Device(nvmlDevice_t device, SimDevice** out) {
  if (nvml_refs == 0) return NVML_ERROR_UNINITIALIZED;
  if (device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *out = reinterpret_cast<SimDevice*>(device);
  return NVML_SUCCESS;
}

nvmlReturn_t CopyString(const char* text, char* out, unsigned int length) {
  if (out == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(text) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(out, text, strlen(text) + 1);
  return NVML_SUCCESS;
}

nvmlReturn_t Init() {
  std::lock_guard lock(nvml_mu);
  if (State().shared() == nullptr) {
    std::string error;
    if (!State().Open(&error)) {
      fprintf(stderr, "gpufrac simulated NVML: %s\n", error.c_str());
      return NVML_ERROR_UNKNOWN;
    }
  }
  ++nvml_refs;
  return NVML_SUCCESS;
}

}  // namespace
}  // namespace gpufrac::sim

using namespace gpufrac::sim;

NVML_EXPORT nvmlReturn_t nvmlInit_v2() { return Init(); }
NVML_EXPORT nvmlReturn_t nvmlInit() { return Init(); }
NVML_EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int) { return Init(); }

NVML_EXPORT nvmlReturn_t nvmlShutdown() {
  std::lock_guard lock(nvml_mu);
  if (nvml_refs == 0) return NVML_ERROR_UNINITIALIZED;
  --nvml_refs;
  return NVML_SUCCESS;
}

NVML_EXPORT const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    default:
      return "Unknown Error";
  }
}

NVML_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  return CopyString("580.00-gpufrac-sim", version, length);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  if (nvml_refs == 0) return NVML_ERROR_UNINITIALIZED;
  if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *count = State().shared()->device_count;
  return NVML_SUCCESS;
}
NVML_EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int* count) {
  return nvmlDeviceGetCount_v2(count);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  if (nvml_refs == 0) return NVML_ERROR_UNINITIALIZED;
  if (device == nullptr || index >= State().shared()->device_count) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  *device = reinterpret_cast<nvmlDevice_t>(&State().shared()->devices[index]);
  return NVML_SUCCESS;
}
NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t* device) {
  return nvmlDeviceGetHandleByIndex_v2(index, device);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  if (nvml_refs == 0) return NVML_ERROR_UNINITIALIZED;
  if (uuid == nullptr || device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  SimShared* shared = State().shared();
  for (unsigned i = 0; i < shared->device_count; ++i) {
    if (strcmp(shared->devices[i].uuid, uuid) == 0) {
      *device = reinterpret_cast<nvmlDevice_t>(&shared->devices[i]);
      return NVML_SUCCESS;
    }
  }
  return NVML_ERROR_NOT_FOUND;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  if (index == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *index = static_cast<unsigned>(d - State().shared()->devices);
  return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  return CopyString(d->name, name, length);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  return CopyString(d->uuid, uuid, length);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  State().ReapDead();
  const unsigned long long used = d->used_bytes.load();
  memory->total = d->total_bytes;
  memory->used = used;
  memory->free = used < d->total_bytes ? d->total_bytes - used : 0;
  return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t* memory) {
  if (memory == nullptr || memory->version != GPUFRAC_NVML_MEMORY_V2) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  nvmlMemory_t v1{};
  if (nvmlReturn_t r = nvmlDeviceGetMemoryInfo(device, &v1); r != NVML_SUCCESS) return r;
  memory->total = v1.total;
  memory->reserved = 0;
  memory->free = v1.free;
  memory->used = v1.used;
  return NVML_SUCCESS;
}

// Per-process memory, as the real driver reports it: every live process holding memory (its
// contexts included) on the device, whether or not it runs under the interposer. That is what the
// node agent's backstop compares against tenants' limits.
namespace gpufrac::sim {
namespace {

template <typename Info>
nvmlReturn_t RunningProcesses(nvmlDevice_t device, unsigned int* count, Info* infos,
                              bool with_instances) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  if (count == nullptr || (infos == nullptr && *count != 0)) return NVML_ERROR_INVALID_ARGUMENT;
  State().ReapDead();
  const auto dev = static_cast<size_t>(d - State().shared()->devices);
  const unsigned int capacity = *count;
  unsigned int found = 0;
  for (SimProcess& p : State().shared()->processes) {
    const int32_t pid = p.pid.load(std::memory_order_acquire);
    const uint64_t held = p.held[dev].load(std::memory_order_relaxed);
    if (pid <= 0 || held == 0 || !gpufrac::ProcessIsAlive(pid, p.start_time)) continue;
    if (found < capacity) {
      Info& info = infos[found];
      memset(&info, 0, sizeof info);
      info.pid = static_cast<unsigned int>(pid);
      info.usedGpuMemory = held;
      if constexpr (sizeof(Info) == sizeof(nvmlProcessInfo_t)) {
        if (with_instances) {
          info.gpuInstanceId = kNvmlNoInstance;
          info.computeInstanceId = kNvmlNoInstance;
        }
      }
    }
    ++found;
  }
  *count = found;
  // Like NVML: a buffer too small gets the needed count and INSUFFICIENT_SIZE.
  return found > capacity ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
}

}  // namespace
}  // namespace gpufrac::sim

NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                                 unsigned int* count,
                                                                 nvmlProcessInfo_t* infos) {
  return RunningProcesses(device, count, infos, true);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                                 unsigned int* count,
                                                                 nvmlProcessInfo_t* infos) {
  return RunningProcesses(device, count, infos, true);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device,
                                                              unsigned int* count,
                                                              nvmlProcessInfo_v1_t* infos) {
  return RunningProcesses(device, count, infos, false);
}

// Utilization as the real driver reports it: the share of the last sample period in which the
// device ran kernels. The period here is the time since this process last asked (the first call
// has none yet and reports 0). Work that ran in it = work submitted in it + the backlog queued at
// its start - the backlog still queued at its end, all on the device's one timeline.
namespace gpufrac::sim {
namespace {

struct UtilizationSample {
  uint64_t at_ns = 0;
  uint64_t busy_ns = 0;
  uint64_t backlog_ns = 0;
};
UtilizationSample utilization_samples[kMaxSimDevices];

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace
}  // namespace gpufrac::sim

NVML_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                       nvmlUtilization_t* utilization) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  if (utilization == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  const uint64_t now = MonotonicNs();
  const uint64_t end = d->timeline_end_ns.load(std::memory_order_acquire);
  const UtilizationSample sample{now, d->busy_ns.load(std::memory_order_relaxed),
                                 end > now ? end - now : 0};
  std::lock_guard lock(nvml_mu);
  UtilizationSample& last = utilization_samples[d - State().shared()->devices];
  utilization->gpu = 0;
  utilization->memory = 0;
  if (last.at_ns != 0 && now > last.at_ns) {
    const double ran = static_cast<double>(sample.busy_ns - last.busy_ns) +
                       static_cast<double>(last.backlog_ns) -
                       static_cast<double>(sample.backlog_ns);
    const double share = ran / static_cast<double>(now - last.at_ns);
    utilization->gpu = static_cast<unsigned>(std::clamp(share, 0.0, 1.0) * 100.0 + 0.5);
  }
  last = sample;
  return NVML_SUCCESS;
}

// Uncorrected memory errors, for testing what the node agent does with an unhealthy GPU: the
// simulated cards have none unless GPUFRAC_SIM_ECC_ERRORS lists some ("1:3": device 1 has had 3),
// as read by the process asking. ECC counting is otherwise supported, as on data-center GPUs.
NVML_EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int error_type,
                                                     int counter_type, unsigned long long* count) {
  SimDevice* d = nullptr;
  if (nvmlReturn_t r = Device(device, &d); r != NVML_SUCCESS) return r;
  if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *count = 0;
  const char* list = getenv("GPUFRAC_SIM_ECC_ERRORS");
  if (list == nullptr || error_type != NVML_MEMORY_ERROR_TYPE_UNCORRECTED) return NVML_SUCCESS;
  (void)counter_type;  // volatile and aggregate counts are the same: the simulation never reboots
  const long index = d - State().shared()->devices;
  for (const char* p = list; *p != '\0';) {
    char* end = nullptr;
    const long device_index = strtol(p, &end, 10);
    if (end == p || *end != ':') break;
    const unsigned long long errors = strtoull(end + 1, &end, 10);
    if (device_index == index) *count = errors;
    if (*end != ',') break;
    p = end + 1;
  }
  return NVML_SUCCESS;
}
