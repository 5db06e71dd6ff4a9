// The simulated driver: initialization, devices, contexts, streams, events, modules and launches.
// Memory lives in sim_memory.cc, entry-point lookup in sim_proc_address.cc.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "sim/sim_process.h"
#include "sim/sim_timeline.h"

namespace gpufrac::sim {
namespace {

thread_local std::vector<Context*> tls_context_stack;

struct Stream {
  int ordinal;
  bool capturing = false;
  bool capture_invalidated = false;
  uint64_t captured_kernels = 0;
  std::vector<CUdeviceptr> captured_frees = {};
};
struct Event {
  uint64_t done_ns = 0;  // when the work recorded before it finishes on the timeline
  bool recorded = false;
};
struct Graph {
  uint64_t kernels;
  std::vector<CUdeviceptr> frees;  // run after the kernels at a launch
};

// Streams capturing now. As in CUDA's global capture mode (the default), a synchronization
// anywhere in the process while one is open fails and invalidates the capture.
std::mutex g_capture_mu;
std::vector<Stream*> g_capturing;

bool InvalidateOpenCaptures() {
  std::lock_guard<std::mutex> lock(g_capture_mu);
  for (Stream* s : g_capturing) s->capture_invalidated = true;
  return !g_capturing.empty();
}

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
  if (InvalidateOpenCaptures()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  Context* c = CurrentContext();
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  WaitIdle(c->ordinal);
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
  {
    std::lock_guard<std::mutex> lock(g_capture_mu);
    std::erase(g_capturing, reinterpret_cast<Stream*>(stream));
  }
  delete reinterpret_cast<Stream*>(stream);
  return CUDA_SUCCESS;
}

// The device a stream's work goes to: the stream's own, or the current context's for the null
// stream. -1 when there is neither.
// The null stream and the special handles CU_STREAM_LEGACY (0x1) and CU_STREAM_PER_THREAD (0x2)
// are the current context's default streams; any other handle is one of ours.
static Stream* OwnStream(CUstream stream) {
  const auto handle = reinterpret_cast<uintptr_t>(stream);
  return handle > 0x2 ? reinterpret_cast<Stream*>(stream) : nullptr;
}

bool gpufrac::sim::CaptureFree(CUstream stream, CUdeviceptr dptr) {
  Stream* s = OwnStream(stream);
  if (s == nullptr || !s->capturing) return false;
  s->captured_frees.push_back(dptr);
  return true;
}

static int StreamOrdinal(CUstream stream) {
  if (Stream* s = OwnStream(stream); s != nullptr) return s->ordinal;
  Context* c = CurrentContext();
  return c != nullptr ? c->ordinal : -1;
}

SIM_EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (InvalidateOpenCaptures()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  const int ordinal = StreamOrdinal(stream);
  if (ordinal < 0) return CUDA_ERROR_INVALID_CONTEXT;
  WaitIdle(ordinal);
  ReleaseCachedPools();
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream s) { return cuStreamSynchronize(s); }
SIM_EXPORT CUresult cuStreamQuery(CUstream stream) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  const int ordinal = StreamOrdinal(stream);
  if (ordinal < 0) return CUDA_ERROR_INVALID_CONTEXT;
  return LastFinishNs(ordinal) > NowNs() ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuStreamQuery_ptsz(CUstream s) { return cuStreamQuery(s); }

SIM_EXPORT CUresult cuEventCreate(CUevent* event, unsigned int) {
  if (event == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *event = reinterpret_cast<CUevent>(new Event());
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventRecord(CUevent event, CUstream stream) {
  if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  const int ordinal = StreamOrdinal(stream);
  if (ordinal < 0) return CUDA_ERROR_INVALID_CONTEXT;
  auto* e = reinterpret_cast<Event*>(event);
  const uint64_t now = NowNs();
  const uint64_t finish = LastFinishNs(ordinal);
  e->done_ns = finish > now ? finish : now;
  e->recorded = true;
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventRecord_ptsz(CUevent event, CUstream s) {
  return cuEventRecord(event, s);
}
SIM_EXPORT CUresult cuEventSynchronize(CUevent event) {
  if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  auto* e = reinterpret_cast<Event*>(event);
  if (e->recorded && e->done_ns > NowNs()) SleepUntil(e->done_ns);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuEventQuery(CUevent event) {
  if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  auto* e = reinterpret_cast<Event*>(event);
  return e->recorded && e->done_ns > NowNs() ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
}
static CUresult ElapsedTime(float* ms, CUevent start, CUevent end) {
  if (ms == nullptr || start == nullptr || end == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto* a = reinterpret_cast<Event*>(start);
  auto* b = reinterpret_cast<Event*>(end);
  if (!a->recorded || !b->recorded) return CUDA_ERROR_INVALID_HANDLE;
  if (a->done_ns > NowNs() || b->done_ns > NowNs()) return CUDA_ERROR_NOT_READY;
  *ms =
      static_cast<float>(static_cast<double>(static_cast<int64_t>(b->done_ns - a->done_ns)) / 1e6);
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

// Puts `kernels` kernels on the stream: recorded into its graph while it captures, otherwise
// onto the device's timeline.
static CUresult Submit(CUstream stream, uint64_t kernels) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  const int ordinal = StreamOrdinal(stream);
  if (ordinal < 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (Stream* s = OwnStream(stream); s != nullptr && s->capturing) {
    s->captured_kernels += kernels;
    return CUDA_SUCCESS;
  }
  Enqueue(ordinal, kernels);
  return CUDA_SUCCESS;
}

static CUresult LaunchChecked(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                              unsigned int bx, unsigned int by, unsigned int bz, CUstream stream) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return Submit(stream, 1);
}

SIM_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                   unsigned int bx, unsigned int by, unsigned int bz, unsigned int,
                                   CUstream stream, void**, void**) {
  return LaunchChecked(f, gx, gy, gz, bx, by, bz, stream);
}
SIM_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                        unsigned int gz, unsigned int bx, unsigned int by,
                                        unsigned int bz, unsigned int shmem, CUstream s,
                                        void** params, void** extra) {
  return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}
SIM_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy,
                                              unsigned int gz, unsigned int bx, unsigned int by,
                                              unsigned int bz, unsigned int, CUstream stream,
                                              void**) {
  return LaunchChecked(f, gx, gy, gz, bx, by, bz, stream);
}
SIM_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                                   unsigned int gz, unsigned int bx,
                                                   unsigned int by, unsigned int bz,
                                                   unsigned int shmem, CUstream s, void** p) {
  return cuLaunchCooperativeKernel(f, gx, gy, gz, bx, by, bz, shmem, s, p);
}

// cuLaunchKernelEx's config starts with the grid and block dimensions, then shared memory and
// the stream (CUlaunchConfig in <cuda.h>).
struct LaunchConfigHead {
  unsigned int gx, gy, gz, bx, by, bz, shmem;
  CUstream stream;
};
SIM_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void**, void**) {
  if (config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const auto* c = reinterpret_cast<const LaunchConfigHead*>(config);
  return LaunchChecked(f, c->gx, c->gy, c->gz, c->bx, c->by, c->bz, c->stream);
}
SIM_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f, void** p,
                                          void** e) {
  return cuLaunchKernelEx(config, f, p, e);
}

// Asynchronous copies and memsets occupy the timeline like a kernel (no data moves: device
// memory is not backed).
SIM_EXPORT CUresult cuMemsetD8Async(CUdeviceptr, unsigned char, size_t, CUstream s) {
  return Submit(s, 1);
}
SIM_EXPORT CUresult cuMemsetD32Async(CUdeviceptr, unsigned int, size_t, CUstream s) {
  return Submit(s, 1);
}
SIM_EXPORT CUresult cuMemcpyAsync(CUdeviceptr, CUdeviceptr, size_t, CUstream s) {
  return Submit(s, 1);
}
SIM_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr, const void*, size_t, CUstream s) {
  return Submit(s, 1);
}
SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2(void*, CUdeviceptr, size_t, CUstream s) {
  return Submit(s, 1);
}
SIM_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr, CUdeviceptr, size_t, CUstream s) {
  return Submit(s, 1);
}

// --- graphs: stream capture records kernels; a launch replays them ---

SIM_EXPORT CUresult cuStreamBeginCapture_v2(CUstream stream, int) {
  auto* s = OwnStream(stream);
  if (s == nullptr) return CUDA_ERROR_INVALID_VALUE;  // default streams cannot capture
  s->capturing = true;
  s->capture_invalidated = false;
  s->captured_kernels = 0;
  s->captured_frees.clear();
  std::lock_guard<std::mutex> lock(g_capture_mu);
  g_capturing.push_back(s);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuStreamBeginCapture(CUstream stream, int mode) {
  return cuStreamBeginCapture_v2(stream, mode);
}
SIM_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream stream, int mode) {
  return cuStreamBeginCapture_v2(stream, mode);
}
SIM_EXPORT CUresult cuStreamEndCapture(CUstream stream, CUgraph* graph) {
  auto* s = OwnStream(stream);
  if (s == nullptr || graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!s->capturing) return CUDA_ERROR_INVALID_VALUE;
  s->capturing = false;
  {
    std::lock_guard<std::mutex> lock(g_capture_mu);
    std::erase(g_capturing, s);
  }
  if (s->capture_invalidated) {
    *graph = nullptr;
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  *graph = reinterpret_cast<CUgraph>(new Graph{s->captured_kernels, s->captured_frees});
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream stream, CUgraph* graph) {
  return cuStreamEndCapture(stream, graph);
}
SIM_EXPORT CUresult cuStreamIsCapturing(CUstream stream, int* status) {
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *status = OwnStream(stream) != nullptr && OwnStream(stream)->capturing ? 1 : 0;
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph,
                                                unsigned long long) {
  if (exec == nullptr || graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *exec = reinterpret_cast<CUgraphExec>(new Graph(*reinterpret_cast<Graph*>(graph)));
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Graph& g = *reinterpret_cast<Graph*>(exec);
  if (CUresult r = Submit(stream, g.kernels); r != CUDA_SUCCESS) return r;
  for (CUdeviceptr dptr : g.frees) RunCapturedFree(dptr);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec exec, CUstream stream) {
  return cuGraphLaunch(exec, stream);
}
SIM_EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec) {
  delete reinterpret_cast<Graph*>(exec);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  delete reinterpret_cast<Graph*>(graph);
  return CUDA_SUCCESS;
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
