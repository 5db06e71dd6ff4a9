// A CUDA driver client written as if gpufrac did not exist: it reaches the driver the way real
// programs do (dlopen + cuGetProcAddress like the CUDA runtime, dlopen + dlsym, or direct linking
// when built as cuda_probe_linked) and reports what it could allocate. Integration tests run it
// under gpufrac run and read its output.
//
//   cuda_probe [--resolve procaddress|dlsym] COMMAND ...
//     info                         print the memory the workload sees (CUDA and NVML)
//     fill API CHUNK [BARRIER]     allocate CHUNK-sized pieces with API until refused; print the
//                                  total; with BARRIER, hold it until that file exists
//     hold API BYTES               allocate, print "ready", sleep until killed
//     alloc API BYTES              one allocation; print the result code
//     churn API BYTES COUNT        COUNT alloc/free pairs; print the final free memory
//     share                        export + import (VMM and IPC); print free memory after each
//     exec-fill API CHUNK          allocate one CHUNK, then exec "fill API CHUNK" in this process
//     spin SECONDS WINDOW_MS [GRAPH_KERNELS]
//                                  launch kernels back to back (or replay a captured graph of
//                                  GRAPH_KERNELS kernels); print "w=<window> k=<kernels>" per
//                                  window of the monotonic clock
//     bursts COUNT KERNELS PERIOD_MS
//                                  every PERIOD_MS launch KERNELS kernels and synchronize; print
//                                  the bursts' latency percentiles in microseconds
//     ranks SECONDS KERNELS         two processes, one per visible GPU, as tensor-parallel ranks:
//                                  each launches KERNELS kernels and synchronizes, then both meet
//                                  at a barrier; print "iterations=<n>" done together
//     preinit API BYTES            retain a context and allocate with vmm before cuInit (both must
//                                  fail), then allocate BYTES with API as usual
//     pool-device DEVICE BYTES     with the context on device 0, allocate BYTES twice from a pool
//                                  on DEVICE; print the results and both devices' free memory
//     pool-destroy BYTES           allocate and free BYTES in a pool that caches everything,
//                                  destroy it, then cuMemAlloc BYTES; print free memory throughout
//     pool-churn COUNT             COUNT cycles of pool create, allocate, free, destroy
//     pool-drain HELD CACHED OVER FREE
//                                  a pool that caches CACHED is destroyed while HELD is allocated
//                                  from it; then cuMemAlloc OVER (freed again) before and after
//                                  HELD is freed with FREE (async: cuMemFreeAsync + synchronize;
//                                  free: cuMemFree; queued: cuMemFreeAsync behind 3 kernels, OVER
//                                  tried again after another pool's trim, before the stream has
//                                  run the free, then synchronize; captured: cuMemFreeAsync into a
//                                  stream capture whose graph is never launched, OVER tried after
//                                  another pool's trim), and a new pool is used and
//                                  destroyed; print
//                                  free memory throughout, the results, and what the driver says
//                                  of HELD's pointer after its pool is destroyed
//   APIs: alloc pitch managed async pool vmm array array3d mipmap
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "common/quantity.h"
#include "runtime/cuda_abi.h"
#include "runtime/nvml_abi.h"

#ifdef CUDA_PROBE_LINKED
extern "C" {
CUresult cuInit(unsigned);
CUresult cuDevicePrimaryCtxRetain(CUcontext*, CUdevice);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuMemGetInfo_v2(size_t*, size_t*);
CUresult cuDeviceTotalMem_v2(size_t*, CUdevice);
CUresult cuMemAlloc_v2(CUdeviceptr*, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
}
#endif

namespace {

struct Driver {
  CUresult (*Init)(unsigned);
  CUresult (*PrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*MemGetInfo)(size_t*, size_t*);
  CUresult (*DeviceTotalMem)(size_t*, CUdevice);
  CUresult (*MemAlloc)(CUdeviceptr*, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*MemAllocPitch)(CUdeviceptr*, size_t*, size_t, size_t, unsigned);
  CUresult (*MemAllocManaged)(CUdeviceptr*, size_t, unsigned);
  CUresult (*MemAllocAsync)(CUdeviceptr*, size_t, CUstream);
  CUresult (*MemFreeAsync)(CUdeviceptr, CUstream);
  CUresult (*MemPoolCreate)(CUmemoryPool*, const CUmemPoolProps*);
  CUresult (*MemPoolDestroy)(CUmemoryPool);
  CUresult (*MemPoolSetAttribute)(CUmemoryPool, CUmemPool_attribute, void*);
  CUresult (*MemPoolTrimTo)(CUmemoryPool, size_t);
  CUresult (*MemAllocFromPoolAsync)(CUdeviceptr*, size_t, CUmemoryPool, CUstream);
  CUresult (*PointerGetAttribute)(void*, CUpointer_attribute, CUdeviceptr);
  CUresult (*MemGetAddressRange)(CUdeviceptr*, size_t*, CUdeviceptr);
  CUresult (*StreamSynchronize)(CUstream);
  CUresult (*MemCreate)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*,
                        unsigned long long);
  CUresult (*MemRelease)(CUmemGenericAllocationHandle);
  CUresult (*MemExport)(void*, CUmemGenericAllocationHandle, CUmemAllocationHandleType,
                        unsigned long long);
  CUresult (*MemImport)(CUmemGenericAllocationHandle*, void*, CUmemAllocationHandleType);
  CUresult (*IpcGetMemHandle)(CUipcMemHandle*, CUdeviceptr);
  CUresult (*IpcOpenMemHandle)(CUdeviceptr*, CUipcMemHandle, unsigned);
  CUresult (*IpcCloseMemHandle)(CUdeviceptr);
  CUresult (*ArrayCreate)(CUarray*, const CUDA_ARRAY_DESCRIPTOR*);
  CUresult (*Array3DCreate)(CUarray*, const CUDA_ARRAY3D_DESCRIPTOR*);
  CUresult (*MipmappedArrayCreate)(CUmipmappedArray*, const CUDA_ARRAY3D_DESCRIPTOR*, unsigned);
  CUresult (*ModuleLoadData)(CUmodule*, const void*);
  CUresult (*ModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void**, void**);
  CUresult (*CtxSynchronize)();
  CUresult (*StreamCreate)(CUstream*, unsigned);
  CUresult (*StreamBeginCapture)(CUstream, int);
  CUresult (*StreamEndCapture)(CUstream, CUgraph*);
  CUresult (*GraphInstantiate)(CUgraphExec*, CUgraph, unsigned long long);
  CUresult (*GraphLaunch)(CUgraphExec, CUstream);
};

Driver g;

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "cuda_probe: %s\n", what);
  exit(3);
}

template <typename T>
void Bind(T* slot, const char* base, const char* versioned, const std::string& mode, void* lib) {
  void* f = nullptr;
  if (mode == "dlsym") {
    f = dlsym(lib, versioned);
  } else {
    // What the CUDA runtime does: ask the driver by base name and version.
    using GetProc =
        CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
    static auto get_proc = reinterpret_cast<GetProc>(dlsym(lib, "cuGetProcAddress_v2"));
    if (get_proc == nullptr) Die("no cuGetProcAddress_v2");
    CUdriverProcAddressQueryResult status{};
    if (get_proc(base, &f, 12080, CU_GET_PROC_ADDRESS_DEFAULT, &status) != CUDA_SUCCESS)
      f = nullptr;
  }
  *slot = reinterpret_cast<T>(f);
}

void Load(const std::string& mode) {
#ifdef CUDA_PROBE_LINKED
  (void)mode;
  g.Init = cuInit;
  g.PrimaryCtxRetain = cuDevicePrimaryCtxRetain;
  g.CtxSetCurrent = cuCtxSetCurrent;
  g.MemGetInfo = cuMemGetInfo_v2;
  g.DeviceTotalMem = cuDeviceTotalMem_v2;
  g.MemAlloc = cuMemAlloc_v2;
  g.MemFree = cuMemFree_v2;
#else
  void* lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (lib == nullptr) Die(dlerror());
#define BIND(field, base, versioned) Bind(&g.field, base, versioned, mode, lib)
  BIND(Init, "cuInit", "cuInit");
  BIND(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRetain");
  BIND(CtxSetCurrent, "cuCtxSetCurrent", "cuCtxSetCurrent");
  BIND(MemGetInfo, "cuMemGetInfo", "cuMemGetInfo_v2");
  BIND(DeviceTotalMem, "cuDeviceTotalMem", "cuDeviceTotalMem_v2");
  BIND(MemAlloc, "cuMemAlloc", "cuMemAlloc_v2");
  BIND(MemFree, "cuMemFree", "cuMemFree_v2");
  BIND(MemAllocPitch, "cuMemAllocPitch", "cuMemAllocPitch_v2");
  BIND(MemAllocManaged, "cuMemAllocManaged", "cuMemAllocManaged");
  BIND(MemAllocAsync, "cuMemAllocAsync", "cuMemAllocAsync");
  BIND(MemFreeAsync, "cuMemFreeAsync", "cuMemFreeAsync");
  BIND(MemPoolCreate, "cuMemPoolCreate", "cuMemPoolCreate");
  BIND(MemPoolDestroy, "cuMemPoolDestroy", "cuMemPoolDestroy");
  BIND(MemPoolSetAttribute, "cuMemPoolSetAttribute", "cuMemPoolSetAttribute");
  BIND(MemPoolTrimTo, "cuMemPoolTrimTo", "cuMemPoolTrimTo");
  BIND(MemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", "cuMemAllocFromPoolAsync");
  BIND(PointerGetAttribute, "cuPointerGetAttribute", "cuPointerGetAttribute");
  BIND(MemGetAddressRange, "cuMemGetAddressRange", "cuMemGetAddressRange_v2");
  BIND(StreamSynchronize, "cuStreamSynchronize", "cuStreamSynchronize");
  BIND(MemCreate, "cuMemCreate", "cuMemCreate");
  BIND(MemRelease, "cuMemRelease", "cuMemRelease");
  BIND(MemExport, "cuMemExportToShareableHandle", "cuMemExportToShareableHandle");
  BIND(MemImport, "cuMemImportFromShareableHandle", "cuMemImportFromShareableHandle");
  BIND(IpcGetMemHandle, "cuIpcGetMemHandle", "cuIpcGetMemHandle");
  BIND(IpcOpenMemHandle, "cuIpcOpenMemHandle", "cuIpcOpenMemHandle_v2");
  BIND(IpcCloseMemHandle, "cuIpcCloseMemHandle", "cuIpcCloseMemHandle");
  BIND(ArrayCreate, "cuArrayCreate", "cuArrayCreate_v2");
  BIND(Array3DCreate, "cuArray3DCreate", "cuArray3DCreate_v2");
  BIND(MipmappedArrayCreate, "cuMipmappedArrayCreate", "cuMipmappedArrayCreate");
  BIND(ModuleLoadData, "cuModuleLoadData", "cuModuleLoadData");
  BIND(ModuleGetFunction, "cuModuleGetFunction", "cuModuleGetFunction");
  BIND(LaunchKernel, "cuLaunchKernel", "cuLaunchKernel");
  BIND(CtxSynchronize, "cuCtxSynchronize", "cuCtxSynchronize");
  BIND(StreamCreate, "cuStreamCreate", "cuStreamCreate");
  BIND(StreamBeginCapture, "cuStreamBeginCapture", "cuStreamBeginCapture_v2");
  BIND(StreamEndCapture, "cuStreamEndCapture", "cuStreamEndCapture");
  BIND(GraphInstantiate, "cuGraphInstantiateWithFlags", "cuGraphInstantiateWithFlags");
  BIND(GraphLaunch, "cuGraphLaunch", "cuGraphLaunch");
#undef BIND
#endif
}

void Start(CUdevice device = 0) {
  if (g.Init(0) != CUDA_SUCCESS) Die("cuInit failed");
  CUcontext ctx = nullptr;
  const CUresult r = g.PrimaryCtxRetain(&ctx, device);
  if (r != CUDA_SUCCESS) {
    printf("context_result=%d\n", r);
    exit(4);
  }
  g.CtxSetCurrent(ctx);
}

uint64_t Size(const char* text) {
  uint64_t bytes = 0;
  if (gpufrac::ParseSize(text, &bytes) != gpufrac::ParseError::kNone) Die("bad size");
  return bytes;
}

CUmemoryPool CreatePool(CUdevice device) {
  CUmemPoolProps props{};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = device;
  CUmemoryPool pool = nullptr;
  if (g.MemPoolCreate(&pool, &props) != CUDA_SUCCESS) Die("cuMemPoolCreate failed");
  return pool;
}

size_t FreeMemory() {
  size_t free_bytes = 0, total = 0;
  if (g.MemGetInfo(&free_bytes, &total) != CUDA_SUCCESS) Die("cuMemGetInfo failed");
  return free_bytes;
}

// One allocation of about `bytes` with `api`; returns the result code.
CUresult Allocate(const std::string& api, uint64_t bytes) {
  CUdeviceptr ptr = 0;
  if (api == "alloc") return g.MemAlloc(&ptr, bytes);
  if (api == "managed") return g.MemAllocManaged(&ptr, bytes, CU_MEM_ATTACH_GLOBAL);
  if (api == "pitch") {
    size_t pitch = 0;
    return g.MemAllocPitch(&ptr, &pitch, 65536, bytes / 65536, 4);
  }
  if (api == "async") return g.MemAllocAsync(&ptr, bytes, nullptr);
  if (api == "pool") {
    static CUmemoryPool pool = CreatePool(0);
    return g.MemAllocFromPoolAsync(&ptr, bytes, pool, nullptr);
  }
  if (api == "vmm") {
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    CUmemGenericAllocationHandle handle = 0;
    return g.MemCreate(&handle, bytes, &prop, 0);
  }
  if (api == "array") {
    // 1 float channel, 8192 wide: bytes / 32 KiB rows.
    CUDA_ARRAY_DESCRIPTOR d{8192, bytes / (8192 * 4), CU_AD_FORMAT_FLOAT, 1};
    CUarray array = nullptr;
    return g.ArrayCreate(&array, &d);
  }
  if (api == "array3d") {
    CUDA_ARRAY3D_DESCRIPTOR d{1024, 1024, bytes / (1024 * 1024 * 4), CU_AD_FORMAT_FLOAT, 1, 0};
    CUarray array = nullptr;
    return g.Array3DCreate(&array, &d);
  }
  if (api == "mipmap") {
    CUDA_ARRAY3D_DESCRIPTOR d{8192, bytes / (8192 * 4), 0, CU_AD_FORMAT_FLOAT, 1, 0};
    CUmipmappedArray array = nullptr;
    return g.MipmappedArrayCreate(&array, &d, 1);
  }
  Die("unknown API");
}

void PrintInfo() {
  size_t free_bytes = 0, total = 0, device_total = 0;
  const CUresult r = g.MemGetInfo(&free_bytes, &total);
  g.DeviceTotalMem(&device_total, 0);
  printf("cuda_result=%d cuda_free=%zu cuda_total=%zu device_total=%zu\n", r, free_bytes, total,
         device_total);
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (nvml == nullptr) return;
  auto init = reinterpret_cast<nvmlReturn_t (*)()>(dlsym(nvml, "nvmlInit_v2"));
  auto by_uuid = reinterpret_cast<nvmlReturn_t (*)(const char*, nvmlDevice_t*)>(
      dlsym(nvml, "nvmlDeviceGetHandleByUUID"));
  auto memory = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*)>(
      dlsym(nvml, "nvmlDeviceGetMemoryInfo"));
  auto memory2 = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_v2_t*)>(
      dlsym(nvml, "nvmlDeviceGetMemoryInfo_v2"));
  const char* visible = getenv("CUDA_VISIBLE_DEVICES");
  nvmlDevice_t device = nullptr;
  if (init() != NVML_SUCCESS || visible == nullptr || by_uuid(visible, &device) != NVML_SUCCESS) {
    return;
  }
  nvmlMemory_t m{};
  nvmlMemory_v2_t m2{};
  m2.version = GPUFRAC_NVML_MEMORY_V2;
  memory(device, &m);
  memory2(device, &m2);
  printf("nvml_total=%llu nvml_free=%llu nvml_used=%llu nvml2_total=%llu nvml2_free=%llu\n",
         m.total, m.free, m.used, m2.total, m2.free);
}

uint64_t Fill(const std::string& api, uint64_t chunk) {
  uint64_t total = 0;
  CUresult r = CUDA_SUCCESS;
  while ((r = Allocate(api, chunk)) == CUDA_SUCCESS) total += chunk;
  printf("filled=%llu last_result=%d\n", static_cast<unsigned long long>(total), r);
  fflush(stdout);
  return total;
}

uint64_t NowUs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

CUfunction EmptyKernel() {
  static const char kImage[] = "any bytes load on the simulated driver";
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  if (g.ModuleLoadData(&module, kImage) != CUDA_SUCCESS ||
      g.ModuleGetFunction(&function, module, "empty") != CUDA_SUCCESS) {
    Die("module load");
  }
  return function;
}

// Launches back to back for `seconds`, counting kernels per window of the monotonic clock (so
// that concurrent probes count the same windows).
void Spin(double seconds, uint64_t window_us, uint64_t graph_kernels) {
  CUfunction f = EmptyKernel();
  CUstream stream = nullptr;
  CUgraphExec exec = nullptr;
  if (graph_kernels > 0) {
    CUgraph graph = nullptr;
    if (g.StreamCreate(&stream, 0) != CUDA_SUCCESS || g.StreamBeginCapture(stream, 0) != 0) {
      Die("capture");
    }
    for (uint64_t i = 0; i < graph_kernels; ++i) {
      g.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr);
    }
    if (g.StreamEndCapture(stream, &graph) != CUDA_SUCCESS ||
        g.GraphInstantiate(&exec, graph, 0) != CUDA_SUCCESS) {
      Die("graph");
    }
  }
  const uint64_t end = NowUs() + static_cast<uint64_t>(seconds * 1e6);
  uint64_t window = NowUs() / window_us;
  uint64_t kernels = 0;
  for (uint64_t now = NowUs(); now < end; now = NowUs()) {
    if (now / window_us != window) {
      printf("w=%llu k=%llu\n", static_cast<unsigned long long>(window),
             static_cast<unsigned long long>(kernels));
      window = now / window_us;
      kernels = 0;
    }
    const CUresult r = exec != nullptr
                           ? g.GraphLaunch(exec, stream)
                           : g.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr);
    if (r != CUDA_SUCCESS) Die("launch");
    kernels += exec != nullptr ? graph_kernels : 1;
  }
  g.CtxSynchronize();
  fflush(stdout);
}

// Latency-sensitive bursts: KERNELS launches then a synchronize, every PERIOD_MS.
void Bursts(int count, int kernels, int period_ms) {
  CUfunction f = EmptyKernel();
  std::vector<double> latencies;
  uint64_t next = NowUs();
  for (int i = 0; i < count; ++i) {
    while (NowUs() < next) std::this_thread::sleep_for(std::chrono::microseconds(100));
    const uint64_t start = NowUs();
    for (int k = 0; k < kernels; ++k)
      g.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr);
    g.CtxSynchronize();
    latencies.push_back(static_cast<double>(NowUs() - start));
    next = start + static_cast<uint64_t>(period_ms) * 1000;
  }
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) { return latencies[static_cast<size_t>(p * (latencies.size() - 1))]; };
  printf("p50_us=%.0f p99_us=%.0f max_us=%.0f\n", pct(0.5), pct(0.99), latencies.back());
}

// Driver calls before cuInit fail, and must not leave the device unmanaged afterwards.
void PreInit(const std::string& api, uint64_t bytes) {
  CUcontext ctx = nullptr;
  printf("early_context_result=%d ", g.PrimaryCtxRetain(&ctx, 0));
  printf("early_vmm_result=%d\n", Allocate("vmm", bytes));
  Start();
  printf("result=%d\n", Allocate(api, bytes));
}

// A pool's memory is its device's, whichever device the current context is on.
void PoolOnDevice(CUdevice device, uint64_t bytes) {
  CUmemoryPool pool = CreatePool(device);
  CUdeviceptr first = 0, second = 0;
  const CUresult r1 = g.MemAllocFromPoolAsync(&first, bytes, pool, nullptr);
  const CUresult r2 = g.MemAllocFromPoolAsync(&second, bytes, pool, nullptr);
  const size_t context_free = FreeMemory();
  CUcontext ctx = nullptr;
  if (g.PrimaryCtxRetain(&ctx, device) != CUDA_SUCCESS) Die("context on the pool's device");
  g.CtxSetCurrent(ctx);
  printf("first_result=%d second_result=%d context_free=%zu pool_device_free=%zu\n", r1, r2,
         context_free, FreeMemory());
}

void PoolDestroy(uint64_t bytes) {
  CUmemoryPool pool = CreatePool(0);
  cuuint64_t keep_everything = UINT64_MAX;  // as frameworks keep freed memory cached
  g.MemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_everything);
  CUdeviceptr ptr = 0;
  if (g.MemAllocFromPoolAsync(&ptr, bytes, pool, nullptr) != CUDA_SUCCESS) Die("pool alloc");
  const size_t allocated_free = FreeMemory();
  g.MemFreeAsync(ptr, nullptr);
  g.StreamSynchronize(nullptr);
  const size_t cached_free = FreeMemory();
  if (g.MemPoolDestroy(pool) != CUDA_SUCCESS) Die("cuMemPoolDestroy");
  const size_t destroyed_free = FreeMemory();
  printf("allocated_free=%zu cached_free=%zu destroyed_free=%zu result=%d\n", allocated_free,
         cached_free, destroyed_free, g.MemAlloc(&ptr, bytes));
}

// A pool destroyed with memory still allocated from it keeps that memory until it is freed.
void PoolDrain(uint64_t held, uint64_t cached, uint64_t over, const std::string& free_api) {
  if (free_api != "async" && free_api != "free" && free_api != "queued" && free_api != "captured") {
    Die("FREE must be async, free, queued or captured");
  }
  const size_t start_free = FreeMemory();
  CUmemoryPool pool = CreatePool(0);
  cuuint64_t keep_everything = UINT64_MAX;
  g.MemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_everything);
  CUdeviceptr ptr = 0, spare = 0;
  if (g.MemAllocFromPoolAsync(&ptr, held, pool, nullptr) != CUDA_SUCCESS ||
      g.MemAllocFromPoolAsync(&spare, cached, pool, nullptr) != CUDA_SUCCESS) {
    Die("pool alloc");
  }
  g.MemFreeAsync(spare, nullptr);
  g.StreamSynchronize(nullptr);
  const size_t pooled_free = FreeMemory();
  const CUresult destroyed = g.MemPoolDestroy(pool);
  const size_t destroyed_free = FreeMemory();
  // The destroyed pool's handle takes no new allocation; its outstanding one still names it.
  const CUresult reuse = g.MemAllocFromPoolAsync(&spare, cached, pool, nullptr);
  CUmemoryPool owner = nullptr;
  size_t range_size = 0, address_range_size = 0;
  CUdeviceptr base = 0;
  g.PointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, ptr);
  g.PointerGetAttribute(&range_size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, ptr);
  g.MemGetAddressRange(&base, &address_range_size, ptr);
  const bool base_is_ptr = base == ptr;
  auto try_over = [&] {
    CUdeviceptr big = 0;
    const CUresult r = g.MemAlloc(&big, over);
    if (r == CUDA_SUCCESS) g.MemFree(big);
    return r;
  };
  const CUresult over_held = try_over();
  if (free_api == "queued") {
    CUfunction f = EmptyKernel();
    for (int i = 0; i < 3; ++i) g.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr);
  }
  CUstream capture = nullptr;
  if (free_api == "captured" &&
      (g.StreamCreate(&capture, 0) != CUDA_SUCCESS || g.StreamBeginCapture(capture, 0) != 0)) {
    Die("capture");
  }
  const CUresult freed = free_api == "free" ? g.MemFree(ptr) : g.MemFreeAsync(ptr, capture);
  if (free_api == "captured") {
    CUgraph graph = nullptr;
    g.StreamEndCapture(capture, &graph);  // never launched: the free never runs
    CUmemoryPool other = CreatePool(0);
    g.MemPoolTrimTo(other, 0);
    printf("captured_free=%zu ", FreeMemory());
    printf("over_captured_result=%d\n", try_over());
    g.MemPoolDestroy(other);
    return;
  }
  if (free_api == "queued") {
    // Another pool's trim, at which gpufrac credits what pools gave back, while the stream has
    // not yet reached the free: the destroyed pool's memory is still the driver's.
    CUmemoryPool other = CreatePool(0);
    g.MemPoolTrimTo(other, 0);
    const size_t queued_free = FreeMemory();
    const CUresult over_queued = try_over();
    g.MemPoolDestroy(other);
    printf("queued_free=%zu over_queued_result=%d\n", queued_free, over_queued);
  }
  if (free_api != "free") g.StreamSynchronize(nullptr);
  const size_t freed_free = FreeMemory();
  const CUresult over_freed = try_over();
  // A new pool, which may get the destroyed pool's handle value, is charged as its own.
  CUmemoryPool next = CreatePool(0);
  const CUresult next_alloc = g.MemAllocFromPoolAsync(&ptr, held, next, nullptr);
  const size_t next_free = FreeMemory();
  g.MemFreeAsync(ptr, nullptr);
  g.StreamSynchronize(nullptr);
  g.MemPoolDestroy(next);
  printf("start_free=%zu pooled_free=%zu destroy_result=%d destroyed_free=%zu reuse_result=%d\n",
         start_free, pooled_free, destroyed, destroyed_free, reuse);
  printf("owner_is_pool=%d range_size=%zu address_range_size=%zu base_is_ptr=%d\n", owner == pool,
         range_size, address_range_size, base_is_ptr);
  printf("over_held_result=%d free_result=%d freed_free=%zu over_freed_result=%d\n", over_held,
         freed, freed_free, over_freed);
  printf("same_handle=%d next_alloc_result=%d next_free=%zu end_free=%zu\n", next == pool,
         next_alloc, next_free, FreeMemory());
}

void PoolChurn(int count) {
  int cycles = 0;
  CUresult r = CUDA_SUCCESS;
  for (; cycles < count; ++cycles) {
    CUmemoryPool pool = CreatePool(0);
    CUdeviceptr ptr = 0;
    if ((r = g.MemAllocFromPoolAsync(&ptr, 1 << 20, pool, nullptr)) != CUDA_SUCCESS) break;
    g.MemFreeAsync(ptr, nullptr);
    g.StreamSynchronize(nullptr);
    if ((r = g.MemPoolDestroy(pool)) != CUDA_SUCCESS) break;
  }
  printf("cycles=%d last_result=%d cuda_free=%zu\n", cycles, r, FreeMemory());
}

void WaitForFile(const char* path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (access(path, F_OK) != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

// Tensor-parallel ranks: forked before the driver is initialized (CUDA does not survive fork),
// one per GPU, meeting at a barrier in shared memory after every step, as ranks meet at a
// collective. The last rank to arrive decides, for both, whether time is up.
struct RankBarrier {
  std::atomic<uint32_t> arrived;
  std::atomic<uint32_t> generation;
  std::atomic<uint32_t> stop;
  std::atomic<uint64_t> iterations;
};

bool MeetAndCheck(RankBarrier* b, uint64_t deadline_us) {
  const uint32_t generation = b->generation.load(std::memory_order_acquire);
  if (b->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == 2) {
    b->arrived.store(0, std::memory_order_relaxed);
    b->iterations.fetch_add(1, std::memory_order_relaxed);
    if (NowUs() >= deadline_us) b->stop.store(1, std::memory_order_relaxed);
    b->generation.store(generation + 1, std::memory_order_release);
  } else {
    while (b->generation.load(std::memory_order_acquire) == generation) usleep(20);
  }
  return b->stop.load(std::memory_order_relaxed) != 0;
}

void Ranks(double seconds, int kernels) {
  void* p =
      mmap(nullptr, sizeof(RankBarrier), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die("mmap");
  auto* barrier = new (p) RankBarrier{};
  const uint64_t deadline = NowUs() + static_cast<uint64_t>(seconds * 1e6);
  pid_t ranks[2];
  for (int rank = 0; rank < 2; ++rank) {
    ranks[rank] = fork();
    if (ranks[rank] < 0) Die("fork");
    if (ranks[rank] == 0) {
      Start(rank);
      CUfunction f = EmptyKernel();
      do {
        for (int k = 0; k < kernels; ++k) {
          if (g.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr) != CUDA_SUCCESS) {
            Die("launch");
          }
        }
        g.CtxSynchronize();
      } while (!MeetAndCheck(barrier, deadline));
      _exit(0);
    }
  }
  int failed = 0;
  for (pid_t rank : ranks) {
    int status = 0;
    waitpid(rank, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  if (failed != 0) Die("a rank failed");
  printf("iterations=%llu\n", static_cast<unsigned long long>(barrier->iterations.load()));
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string mode = "procaddress";
  if (!args.empty() && args[0].rfind("--resolve=", 0) == 0) {
    mode = args[0].substr(10);
    args.erase(args.begin());
  }
  if (args.empty()) Die("usage: cuda_probe [--resolve=MODE] COMMAND ...");
  Load(mode);
  const std::string& command = args[0];
  if (command == "ranks" && args.size() == 3) {
    Ranks(atof(args[1].c_str()), atoi(args[2].c_str()));
    return 0;
  }
  if (command == "preinit" && args.size() == 3) {
    PreInit(args[1], Size(args[2].c_str()));
    return 0;
  }
  Start();
  if (command == "info") {
    PrintInfo();
  } else if (command == "fill" && args.size() >= 3) {
    Fill(args[1], Size(args[2].c_str()));
    if (args.size() >= 4) WaitForFile(args[3].c_str());
  } else if (command == "alloc" && args.size() == 3) {
    printf("result=%d\n", Allocate(args[1], Size(args[2].c_str())));
  } else if (command == "hold" && args.size() == 3) {
    const CUresult r = Allocate(args[1], Size(args[2].c_str()));
    printf("%s result=%d\n", r == CUDA_SUCCESS ? "ready" : "failed", r);
    fflush(stdout);
    if (r != CUDA_SUCCESS) return 1;
    for (;;) pause();
  } else if (command == "churn" && args.size() == 4) {
    const uint64_t bytes = Size(args[2].c_str());
    const int count = atoi(args[3].c_str());
    for (int i = 0; i < count; ++i) {
      CUdeviceptr ptr = 0;
      if (g.MemAlloc(&ptr, bytes) != CUDA_SUCCESS || g.MemFree(ptr) != CUDA_SUCCESS) Die("churn");
    }
    PrintInfo();
  } else if (command == "share") {
    size_t free0 = 0, free1 = 0, free2 = 0, free3 = 0, total = 0;
    g.MemGetInfo(&free0, &total);
    CUdeviceptr ptr = 0, opened = 0;
    if (g.MemAlloc(&ptr, 256 << 20) != CUDA_SUCCESS) Die("alloc");
    g.MemGetInfo(&free1, &total);
    CUipcMemHandle ipc{};
    if (g.IpcGetMemHandle(&ipc, ptr) != CUDA_SUCCESS ||
        g.IpcOpenMemHandle(&opened, ipc, 1) != CUDA_SUCCESS) {
      Die("ipc");
    }
    g.MemGetInfo(&free2, &total);
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    CUmemGenericAllocationHandle handle = 0, imported = 0;
    int fd = -1;
    if (g.MemCreate(&handle, 256 << 20, &prop, 0) != CUDA_SUCCESS ||
        g.MemExport(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS ||
        g.MemImport(&imported, reinterpret_cast<void*>(static_cast<intptr_t>(fd)),
                    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != CUDA_SUCCESS) {
      Die("vmm share");
    }
    g.MemGetInfo(&free3, &total);
    // Releasing the imported handle and closing the IPC mapping must credit nothing.
    g.MemRelease(imported);
    g.IpcCloseMemHandle(opened);
    size_t free4 = 0;
    g.MemGetInfo(&free4, &total);
    printf("alloc_delta=%zu ipc_delta=%zu vmm_delta=%zu after_release_delta=%zu\n", free0 - free1,
           free1 - free2, free2 - free3, free3 - free4);
  } else if (command == "pool-device" && args.size() == 3) {
    PoolOnDevice(atoi(args[1].c_str()), Size(args[2].c_str()));
  } else if (command == "pool-destroy" && args.size() == 2) {
    PoolDestroy(Size(args[1].c_str()));
  } else if (command == "pool-drain" && args.size() == 5) {
    PoolDrain(Size(args[1].c_str()), Size(args[2].c_str()), Size(args[3].c_str()), args[4]);
  } else if (command == "pool-churn" && args.size() == 2) {
    PoolChurn(atoi(args[1].c_str()));
  } else if (command == "spin" && args.size() >= 3) {
    Spin(atof(args[1].c_str()), static_cast<uint64_t>(atoi(args[2].c_str())) * 1000,
         args.size() >= 4 ? static_cast<uint64_t>(atoi(args[3].c_str())) : 0);
  } else if (command == "bursts" && args.size() == 4) {
    Bursts(atoi(args[1].c_str()), atoi(args[2].c_str()), atoi(args[3].c_str()));
  } else if (command == "exec-fill" && args.size() == 3) {
    if (Allocate(args[1], Size(args[2].c_str())) != CUDA_SUCCESS) Die("first allocation");
    std::vector<char*> next = {argv[0], const_cast<char*>("fill"), args[1].data(), args[2].data(),
                               nullptr};
    execv("/proc/self/exe", next.data());
    Die("exec");
  } else {
    Die("unknown command");
  }
  return 0;
}
