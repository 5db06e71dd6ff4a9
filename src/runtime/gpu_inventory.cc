#include "runtime/gpu_inventory.h"

#include <dlfcn.h>

#include "runtime/nvml_abi.h"

namespace gpufrac {
namespace {

struct Nvml {
  nvmlReturn_t (*init)();
  nvmlReturn_t (*count)(unsigned int*);
  nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t*);
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*uuid)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*);
};

template <typename T>
bool Bind(void* lib, const char* name, T* out) {
  *out = reinterpret_cast<T>(dlsym(lib, name));
  return *out != nullptr;
}

}  // namespace

Status ListGpus(std::vector<GpuInfo>* gpus) {
  gpus->clear();
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    return Status::Error(
        "no NVIDIA driver found (libnvidia-ml.so.1); without a GPU, put build/lib/sim first on "
        "LD_LIBRARY_PATH to use the simulated driver");
  }
  Nvml nvml{};
  if (!Bind(lib, "nvmlInit_v2", &nvml.init) || !Bind(lib, "nvmlDeviceGetCount_v2", &nvml.count) ||
      !Bind(lib, "nvmlDeviceGetHandleByIndex_v2", &nvml.handle) ||
      !Bind(lib, "nvmlDeviceGetName", &nvml.name) || !Bind(lib, "nvmlDeviceGetUUID", &nvml.uuid) ||
      !Bind(lib, "nvmlDeviceGetMemoryInfo", &nvml.memory)) {
    return Status::Error("libnvidia-ml.so.1 lacks a function gpufrac needs");
  }
  if (nvml.init() != NVML_SUCCESS) return Status::Error("NVML failed to initialize");
  unsigned int count = 0;
  if (nvml.count(&count) != NVML_SUCCESS) return Status::Error("NVML cannot count GPUs");
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t device = nullptr;
    char name[NVML_DEVICE_NAME_BUFFER_SIZE] = {};
    char uuid[NVML_DEVICE_UUID_BUFFER_SIZE] = {};
    nvmlMemory_t memory{};
    if (nvml.handle(i, &device) != NVML_SUCCESS ||
        nvml.name(device, name, sizeof name) != NVML_SUCCESS ||
        nvml.uuid(device, uuid, sizeof uuid) != NVML_SUCCESS ||
        nvml.memory(device, &memory) != NVML_SUCCESS) {
      return Status::Error("NVML cannot describe GPU " + std::to_string(i));
    }
    gpus->push_back(GpuInfo{static_cast<int>(i), uuid, name, memory.total});
  }
  return Status::Ok();
}

Status FindGpu(const std::vector<GpuInfo>& gpus, const std::string& selector, GpuInfo* gpu) {
  if (!selector.empty() && selector.find_first_not_of("0123456789") == std::string::npos) {
    const unsigned long index = std::stoul(selector);
    if (index < gpus.size()) {
      *gpu = gpus[index];
      return Status::Ok();
    }
    return Status::Error("unknown GPU '" + selector + "': this host has " +
                         std::to_string(gpus.size()) + " GPU(s)");
  }
  const GpuInfo* match = nullptr;
  if (selector.rfind("GPU-", 0) == 0 && selector.size() >= 8) {
    for (const GpuInfo& g : gpus) {
      if (g.uuid.rfind(selector, 0) != 0) continue;
      if (match != nullptr) return Status::Error("GPU '" + selector + "' is ambiguous");
      match = &g;
    }
  }
  if (match == nullptr) return Status::Error("unknown GPU '" + selector + "'");
  *gpu = *match;
  return Status::Ok();
}

}  // namespace gpufrac
