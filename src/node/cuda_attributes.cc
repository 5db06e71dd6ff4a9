#include "node/cuda_attributes.h"

#include <dlfcn.h>

#include <cstdio>

#include "runtime/cuda_abi.h"

namespace gpufrac::node {

std::map<std::string, int> SmCountsByUuid() {
  std::map<std::string, int> counts;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return counts;
  auto init = reinterpret_cast<CUresult (*)(unsigned int)>(dlsym(lib, "cuInit"));
  auto count = reinterpret_cast<CUresult (*)(int*)>(dlsym(lib, "cuDeviceGetCount"));
  auto get = reinterpret_cast<CUresult (*)(CUdevice*, int)>(dlsym(lib, "cuDeviceGet"));
  auto uuid = reinterpret_cast<CUresult (*)(CUuuid*, CUdevice)>(dlsym(lib, "cuDeviceGetUuid_v2"));
  if (uuid == nullptr) {
    uuid = reinterpret_cast<CUresult (*)(CUuuid*, CUdevice)>(dlsym(lib, "cuDeviceGetUuid"));
  }
  auto attribute = reinterpret_cast<CUresult (*)(int*, CUdevice_attribute, CUdevice)>(
      dlsym(lib, "cuDeviceGetAttribute"));
  int devices = 0;
  if (init == nullptr || count == nullptr || get == nullptr || uuid == nullptr ||
      attribute == nullptr || init(0) != CUDA_SUCCESS || count(&devices) != CUDA_SUCCESS) {
    return counts;  // the library stays loaded: unloading an initialized driver is not safe
  }
  for (int i = 0; i < devices; ++i) {
    CUdevice dev = 0;
    CUuuid id{};
    int sms = 0;
    if (get(&dev, i) != CUDA_SUCCESS || uuid(&id, dev) != CUDA_SUCCESS ||
        attribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev) != CUDA_SUCCESS) {
      continue;
    }
    // NVML's form of the same 16 bytes: GPU-8-4-4-4-12 hex digits.
    const auto* b = reinterpret_cast<const unsigned char*>(id.bytes);
    char text[48];
    snprintf(text, sizeof text,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    counts[text] = sms;
  }
  return counts;
}

}  // namespace gpufrac::node
