// The simulated driver: initialization, devices, contexts, streams, events, modules and launches.
// Memory lives in sim_memory.cc, entry-point lookup in sim_proc_address.cc.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "sim/sim_process.h"

namespace gpufrac::sim {
namespace {

thread_local std::vector<Context*> tls_context_stack;

struct Stream {
  int ordinal;
};
struct Event {
  std::chrono::steady_clock::time_point recorded{};
  bool has_time = false;
};
struct Module {
  std::string image_head;
};
struct Function {
  Module* module;
  std::string name;
};

}  // namespace

Process& Proc() {
  static Process* process = new Process();  // never destroyed: handles outlive static teardown
  return *process;
}

CUresult CheckInit() { return Proc().initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED; }

CUresult CheckOrdinal(CUdevice ordinal) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ordinal < 0 || ordinal >= static_cast<int>(Proc().visible.size())) {
    return CUDA_ERROR_INVALID_DEVICE;
  }
  return CUDA_SUCCESS;
}

int Physical(int ordinal) { return Proc().visible[static_cast<size_t>(ordinal)]; }

Context* CurrentContext() { return tls_context_stack.empty() ? nullptr : tls_context_stack.back(); }

uint64_t NewAddress(uint64_t bytes) {
  Process& p = Proc();
  const uint64_t address = p.next_address;
  p.next_address += (bytes + 511) & ~uint64_t{511};
  p.next_address += 512;  // a gap, so that adjacent allocations never share an address
  return address;
}

namespace {

void SetCurrent(Context* ctx) {
  if (tls_context_stack.empty()) {
    tls_context_stack.push_back(ctx);
  } else {
    tls_context_stack.back() = ctx;
  }
}

bool ChargeContext(int ordinal) {
  const uint64_t bytes = ContextBytes();
  return bytes == 0 || State().Allocate(Physical(ordinal), bytes);
}

void CreditContext(int ordinal) {
  const uint64_t bytes = ContextBytes();
  if (bytes > 0) State().Free(Physical(ordinal), bytes);
}

CUresult CreateContext(CUcontext* pctx, CUdevice ordinal) {
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(ordinal); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  if (!ChargeContext(ordinal)) return CUDA_ERROR_OUT_OF_MEMORY;
  auto* ctx = new Context{ordinal, false};
  tls_context_stack.push_back(ctx);
  *pctx = reinterpret_cast<CUcontext>(ctx);
  return CUDA_SUCCESS;
}

}  // namespace
}  // namespace gpufrac::sim

using namespace gpufrac::sim;

SIM_EXPORT CUresult cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  Process& p = Proc();
  std::lock_guard lock(p.mu);
  if (p.initialized) return CUDA_SUCCESS;
  std::string error;
  if (!State().Open(&error, /*reclaim_previous_image=*/true)) {
    fprintf(stderr, "gpufrac simulated driver: %s\n", error.c_str());
    return CUDA_ERROR_NO_DEVICE;
  }
  p.visible = VisibleDevices(getenv("CUDA_VISIBLE_DEVICES"), *State().shared());
  if (p.visible.empty()) return CUDA_ERROR_NO_DEVICE;
  p.primary.assign(p.visible.size(), nullptr);
  p.primary_refs.assign(p.visible.size(), 0);
  p.default_pools.assign(p.visible.size(), nullptr);
  p.initialized = true;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *version = 13000;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetCount(int* count) {
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *count = static_cast<int>(Proc().visible.size());
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(ordinal); r != CUDA_SUCCESS) return r;
  *device = ordinal;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  snprintf(name, static_cast<size_t>(len), "%s", State().shared()->devices[Physical(dev)].name);
  return CUDA_SUCCESS;
}

static CUresult GetUuid(CUuuid* uuid, CUdevice dev) {
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  // "GPU-xxxxxxxx-xxxx-..." -> 16 raw bytes.
  const char* text = State().shared()->devices[Physical(dev)].uuid + 4;
  int out = 0;
  for (const char* c = text; *c != '\0' && out < 16; ++c) {
    if (*c == '-') continue;
    char byte[3] = {c[0], c[1], '\0'};
    uuid->bytes[out++] = static_cast<char>(strtoul(byte, nullptr, 16));
    ++c;
  }
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) { return GetUuid(uuid, dev); }
SIM_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) { return GetUuid(uuid, dev); }

SIM_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  *bytes = State().shared()->devices[Physical(dev)].total_bytes;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, CUdevice dev) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  switch (attribute) {
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
      *value = State().shared()->devices[Physical(dev)].sm_count;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
      *value = 9;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
      *value = 0;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
      *value = 1024;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED:
      *value = 1;
      return CUDA_SUCCESS;
    default:
      *value = 0;
      return CUDA_SUCCESS;
  }
}

SIM_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  Process& p = Proc();
  std::lock_guard lock(p.mu);
  const size_t i = static_cast<size_t>(dev);
  if (p.primary_refs[i] == 0) {
    if (!ChargeContext(dev)) return CUDA_ERROR_OUT_OF_MEMORY;
    if (p.primary[i] == nullptr) p.primary[i] = new Context{dev, true};
  }
  ++p.primary_refs[i];
  *pctx = reinterpret_cast<CUcontext>(p.primary[i]);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  Process& p = Proc();
  std::lock_guard lock(p.mu);
  const size_t i = static_cast<size_t>(dev);
  if (p.primary_refs[i] == 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (--p.primary_refs[i] == 0) CreditContext(dev);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  Process& p = Proc();
  std::lock_guard lock(p.mu);
  const size_t i = static_cast<size_t>(dev);
  if (p.primary_refs[i] > 0) CreditContext(dev);
  p.primary_refs[i] = 0;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
  if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  *flags = 0;
  *active = Proc().primary_refs[static_cast<size_t>(dev)] > 0 ? 1 : 0;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int) {
  return CheckOrdinal(dev);
}

SIM_EXPORT CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int, CUdevice dev) {
  return CreateContext(pctx, dev);
}
SIM_EXPORT CUresult cuCtxCreate_v3(CUcontext* pctx, CUexecAffinityParam*, int, unsigned int,
                                   CUdevice dev) {
  return CreateContext(pctx, dev);
}
SIM_EXPORT CUresult cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams*, unsigned int,
                                   CUdevice dev) {
  return CreateContext(pctx, dev);
}

SIM_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  auto* c = reinterpret_cast<Context*>(ctx);
  if (c == nullptr || c->primary) return CUDA_ERROR_INVALID_CONTEXT;
  {
    std::lock_guard lock(Proc().mu);
    CreditContext(c->ordinal);
  }
  for (auto& entry : tls_context_stack) {
    if (entry == c) entry = nullptr;
  }
  delete c;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  SetCurrent(reinterpret_cast<Context*>(ctx));
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetCurrent(CUcontext* pctx) {
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *pctx = reinterpret_cast<CUcontext>(CurrentContext());
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  tls_context_stack.push_back(reinterpret_cast<Context*>(ctx));
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* pctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (tls_context_stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  if (pctx != nullptr) *pctx = reinterpret_cast<CUcontext>(tls_context_stack.back());
  tls_context_stack.pop_back();
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetDevice(CUdevice* device) {
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  Context* c = CurrentContext();
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *device = c->ordinal;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxSynchronize() {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (CurrentContext() == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  ReleaseCachedPools();
  return CUDA_SUCCESS;
}

// --- streams and events ---

static CUresult CreateStream(CUstream* stream) {
  if (stream == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  Context* c = CurrentContext();
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *stream = reinterpret_cast<CUstream>(new Stream{c->ordinal});
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamCreate(CUstream* stream, unsigned int) { return CreateStream(stream); }
SIM_EXPORT CUresult cuStreamCreateWithPriority(CUstream* stream, unsigned int, int) {
  return CreateStream(stream);
}
SIM_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  if (stream == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  delete reinterpret_cast<Stream*>(stream);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuStreamSynchronize(CUstream) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  ReleaseCachedPools();
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream s) { return cuStreamSynchronize(s); }
SIM_EXPORT CUresult cuStreamQuery(CUstream) { return CheckInit(); }
SIM_EXPORT CUresult cuStreamQuery_ptsz(CUstream s) { return cuStreamQuery(s); }

SIM_EXPORT CUresult cuEventCreate(CUevent* event, unsigned int) {
  if (event == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *event = reinterpret_cast<CUevent>(new Event());
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventRecord(CUevent event, CUstream) {
  if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  auto* e = reinterpret_cast<Event*>(event);
  e->recorded = std::chrono::steady_clock::now();
  e->has_time = true;
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventRecord_ptsz(CUevent event, CUstream s) {
  return cuEventRecord(event, s);
}
SIM_EXPORT CUresult cuEventSynchronize(CUevent event) {
  return event == nullptr ? CUDA_ERROR_INVALID_HANDLE : CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventQuery(CUevent event) {
  return event == nullptr ? CUDA_ERROR_INVALID_HANDLE : CUDA_SUCCESS;
}
static CUresult ElapsedTime(float* ms, CUevent start, CUevent end) {
  if (ms == nullptr || start == nullptr || end == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto* a = reinterpret_cast<Event*>(start);
  auto* b = reinterpret_cast<Event*>(end);
  if (!a->has_time || !b->has_time) return CUDA_ERROR_INVALID_HANDLE;
  *ms = std::chrono::duration<float, std::milli>(b->recorded - a->recorded).count();
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
  return ElapsedTime(ms, a, b);
}
SIM_EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) {
  return ElapsedTime(ms, a, b);
}
SIM_EXPORT CUresult cuEventDestroy_v2(CUevent event) {
  if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  delete reinterpret_cast<Event*>(event);
  return CUDA_SUCCESS;
}

// --- modules and launches: any bytes load; any function name resolves ---

static CUresult LoadModule(CUmodule* module, const void* image) {
  if (module == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (CurrentContext() == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *module = reinterpret_cast<CUmodule>(new Module{});
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  return LoadModule(module, image);
}
SIM_EXPORT CUresult cuModuleLoadDataEx(CUmodule* module, const void* image, unsigned int, void*,
                                       void**) {
  return LoadModule(module, image);
}
SIM_EXPORT CUresult cuModuleLoad(CUmodule* module, const char* path) {
  if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  FILE* f = fopen(path, "rb");
  if (f == nullptr) return CUDA_ERROR_NOT_FOUND;
  fclose(f);
  return LoadModule(module, path);
}
SIM_EXPORT CUresult cuModuleUnload(CUmodule module) {
  if (module == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  delete reinterpret_cast<Module*>(module);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuModuleGetFunction(CUfunction* fn, CUmodule module, const char* name) {
  if (fn == nullptr || module == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *fn = reinterpret_cast<CUfunction>(new Function{reinterpret_cast<Module*>(module), name});
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                   unsigned int bx, unsigned int by, unsigned int bz, unsigned int,
                                   CUstream, void**, void**) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (CurrentContext() == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                        unsigned int gz, unsigned int bx, unsigned int by,
                                        unsigned int bz, unsigned int shmem, CUstream s,
                                        void** params, void** extra) {
  return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

// --- errors ---

SIM_EXPORT CUresult cuGetErrorName(CUresult error, const char** text) {
  if (text == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (error) {
    case CUDA_SUCCESS:
      *text = "CUDA_SUCCESS";
      break;
    case CUDA_ERROR_INVALID_VALUE:
      *text = "CUDA_ERROR_INVALID_VALUE";
      break;
    case CUDA_ERROR_OUT_OF_MEMORY:
      *text = "CUDA_ERROR_OUT_OF_MEMORY";
      break;
    case CUDA_ERROR_NOT_INITIALIZED:
      *text = "CUDA_ERROR_NOT_INITIALIZED";
      break;
    case CUDA_ERROR_NO_DEVICE:
      *text = "CUDA_ERROR_NO_DEVICE";
      break;
    case CUDA_ERROR_INVALID_DEVICE:
      *text = "CUDA_ERROR_INVALID_DEVICE";
      break;
    case CUDA_ERROR_INVALID_CONTEXT:
      *text = "CUDA_ERROR_INVALID_CONTEXT";
      break;
    case CUDA_ERROR_INVALID_HANDLE:
      *text = "CUDA_ERROR_INVALID_HANDLE";
      break;
    case CUDA_ERROR_NOT_FOUND:
      *text = "CUDA_ERROR_NOT_FOUND";
      break;
    case CUDA_ERROR_NOT_SUPPORTED:
      *text = "CUDA_ERROR_NOT_SUPPORTED";
      break;
    default:
      *text = "CUDA_ERROR_UNKNOWN";
      return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGetErrorString(CUresult error, const char** text) {
  return cuGetErrorName(error, text);
}
