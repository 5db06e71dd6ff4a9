// cuGetProcAddress for the simulated driver: resolves a base name ("cuMemAlloc") to the exported
// variant the caller's CUDA version and stream mode ask for ("cuMemAlloc_v2", "..._ptsz"), the way
// the real driver does, so the CUDA runtime and dlopen-only programs reach the same functions.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include "sim/sim_process.h"

namespace gpufrac::sim {
namespace {

// Versioned variants and the CUDA version (1000 * major + 10 * minor) that introduced each. A
// caller asking for an older version gets the older variant.
struct Variant {
  const char* symbol;
  int since;
};
constexpr Variant kVariants[] = {
    {"cuMemAlloc_v2", 3020},
    {"cuMemAllocPitch_v2", 3020},
    {"cuMemFree_v2", 3020},
    {"cuMemGetInfo_v2", 3020},
    {"cuMemGetAddressRange_v2", 3020},
    {"cuDeviceTotalMem_v2", 3020},
    {"cuArrayCreate_v2", 3020},
    {"cuArray3DCreate_v2", 3020},
    {"cuCtxCreate_v2", 3020},
    {"cuCtxCreate_v3", 11040},
    {"cuCtxCreate_v4", 12050},
    {"cuCtxDestroy_v2", 4000},
    {"cuCtxPushCurrent_v2", 4000},
    {"cuCtxPopCurrent_v2", 4000},
    {"cuStreamDestroy_v2", 4000},
    {"cuEventDestroy_v2", 4000},
    {"cuDevicePrimaryCtxRelease_v2", 11000},
    {"cuDevicePrimaryCtxReset_v2", 11000},
    {"cuDevicePrimaryCtxSetFlags_v2", 11000},
    {"cuDeviceGetUuid_v2", 11040},
    {"cuIpcOpenMemHandle_v2", 11000},
    {"cuGetProcAddress_v2", 12000},
    {"cuEventElapsedTime_v2", 12080},
};

void* Self() {
  static void* handle = [] {
    Dl_info info{};
    dladdr(reinterpret_cast<void*>(&Self), &info);
    return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
  }();
  return handle;
}

void* Lookup(const char* name) { return dlsym(Self(), name); }

int VariantSince(const char* symbol) {
  for (const Variant& v : kVariants) {
    if (strcmp(v.symbol, symbol) == 0) return v.since;
  }
  return 0;
}

CUresult Resolve(const char* base, void** pfn, int version, cuuint64_t flags,
                 CUdriverProcAddressQueryResult* status) {
  if (base == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *pfn = nullptr;
  char name[256];
  if (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) {
    for (const char* suffix : {"_ptsz", "_ptds"}) {
      snprintf(name, sizeof name, "%s%s", base, suffix);
      if (void* f = Lookup(name)) {
        *pfn = f;
        if (status) *status = CU_GET_PROC_ADDRESS_SUCCESS;
        return CUDA_SUCCESS;
      }
    }
  }
  bool found_newer = false;
  for (const char* suffix : {"_v4", "_v3", "_v2", ""}) {
    snprintf(name, sizeof name, "%s%s", base, suffix);
    void* f = Lookup(name);
    if (f == nullptr) continue;
    if (VariantSince(name) > version) {
      found_newer = true;
      continue;
    }
    *pfn = f;
    if (status) *status = CU_GET_PROC_ADDRESS_SUCCESS;
    return CUDA_SUCCESS;
  }
  if (status) {
    *status = found_newer ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                          : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  }
  return CUDA_ERROR_NOT_FOUND;
}

}  // namespace
}  // namespace gpufrac::sim

SIM_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int version,
                                     cuuint64_t flags) {
  return gpufrac::sim::Resolve(symbol, pfn, version, flags, nullptr);
}

SIM_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version,
                                        cuuint64_t flags, CUdriverProcAddressQueryResult* status) {
  return gpufrac::sim::Resolve(symbol, pfn, version, flags, status);
}
