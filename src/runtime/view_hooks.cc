// What the workload sees: its fraction as the whole card. cuMemGetInfo, cuDeviceTotalMem and NVML
// report the tenant's limit as the total, and as free what the tenant can still allocate.
#include <dlfcn.h>

#include <cstring>

#include "runtime/interposer.h"

using namespace gpufrac::runtime;

GPUFRAC_EXPORT int cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  auto real = REAL(cuMemGetInfo_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(free_bytes, total_bytes);
  if (r != CUDA_SUCCESS || !GetConfig().managed) return r;
  uint64_t total = 0, free_left = 0, used = 0;
  if (ManagedView(CurrentOrdinal(), &total, &free_left, &used)) {
    *total_bytes = total;
    // Never more than the card physically has free either.
    *free_bytes = free_left < *free_bytes ? free_left : *free_bytes;
  }
  return r;
}

GPUFRAC_EXPORT int cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  auto real = REAL(cuDeviceTotalMem_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(bytes, dev);
  if (r != CUDA_SUCCESS || !GetConfig().managed) return r;
  uint64_t total = 0, free_left = 0, used = 0;
  if (ManagedView(dev, &total, &free_left, &used)) *bytes = total;
  return r;
}

namespace {

using UuidFn = int (*)(nvmlDevice_t, char*, unsigned int);

bool NvmlView(nvmlDevice_t device, uint64_t* total, uint64_t* free_left, uint64_t* used) {
  if (!GetConfig().managed) return false;
  static UuidFn get_uuid = nullptr;
  if (get_uuid == nullptr) {
    void* nvml = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (nvml == nullptr) return false;
    get_uuid = reinterpret_cast<UuidFn>(dlsym(nvml, "nvmlDeviceGetUUID"));
    if (get_uuid == nullptr) return false;
  }
  char uuid[NVML_DEVICE_UUID_BUFFER_SIZE] = {};
  if (get_uuid(device, uuid, sizeof uuid) != NVML_SUCCESS) return false;
  return ManagedViewByUuid(uuid, total, free_left, used);
}

}  // namespace

GPUFRAC_EXPORT int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  auto real = REAL(nvmlDeviceGetMemoryInfo);
  if (real == nullptr) return NVML_ERROR_NOT_SUPPORTED;
  const int r = real(device, memory);
  uint64_t total = 0, free_left = 0, used = 0;
  if (r == NVML_SUCCESS && NvmlView(device, &total, &free_left, &used)) {
    memory->total = total;
    memory->free = free_left < memory->free ? free_left : memory->free;
    memory->used = used;
  }
  return r;
}

GPUFRAC_EXPORT int nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t* memory) {
  auto real = REAL(nvmlDeviceGetMemoryInfo_v2);
  if (real == nullptr) return NVML_ERROR_NOT_SUPPORTED;
  const int r = real(device, memory);
  uint64_t total = 0, free_left = 0, used = 0;
  if (r == NVML_SUCCESS && NvmlView(device, &total, &free_left, &used)) {
    memory->total = total;
    memory->reserved = 0;
    memory->free = free_left < memory->free ? free_left : memory->free;
    memory->used = used;
  }
  return r;
}
