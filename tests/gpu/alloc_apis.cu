// Real-GPU check of every device allocation path gpufrac intercepts. Linked directly against
// libcuda (-lcuda), so under LD_PRELOAD the interposer's exports are what these calls reach, the
// same way a C++ program linked against the driver would reach them.
//
//   alloc_apis context [WAIT_FILE]
//       Create the primary context only; print nvml_used before/after (the real footprint), then
//       "ready pid=N" and hold the context until WAIT_FILE exists (so the caller can read the
//       per-process figure from nvidia-smi).
//   alloc_apis fill CHUNK_MIB [API...]
//       For each API (default: all), allocate CHUNK_MIB pieces until the driver refuses, print the
//       total, the cuMemGetInfo view before/at peak/after freeing, and the physical use at peak
//       as nvidia-smi reports it outside the interposer; then free everything.
//
// Output is one "key=value ..." line per API so the script can parse it with grep/sed.
#include <cuda.h>
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr unsigned long long kMiB = 1ull << 20;

const char* ErrorName(CUresult r) {
  const char* name = nullptr;
  if (cuGetErrorName(r, &name) != CUDA_SUCCESS || name == nullptr) return "UNKNOWN";
  return name;
}

[[noreturn]] void Die(const char* what, CUresult r) {
  fprintf(stderr, "alloc_apis: %s failed: %s (%d)\n", what, ErrorName(r), static_cast<int>(r));
  exit(3);
}

void Check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) Die(what, r);
}

// Physical use of the card in MiB as the real driver reports it. nvidia-smi runs without the
// interposer (LD_PRELOAD and GPUFRAC_TENANT removed), otherwise it would print the tenant's view.
long long PhysicalUsedMiB() {
  const char* visible = getenv("CUDA_VISIBLE_DEVICES");
  std::string command =
      "env -u LD_PRELOAD -u GPUFRAC_TENANT nvidia-smi --query-gpu=memory.used "
      "--format=csv,noheader,nounits";
  if (visible != nullptr && *visible != '\0') command += std::string(" -i ") + visible;
  command += " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  long long used = -1;
  if (fscanf(pipe, "%lld", &used) != 1) used = -1;
  pclose(pipe);
  return used;
}

// NVML's device-wide used bytes, read in-process (NVML is hooked too, but the context command
// runs without gpufrac).
long long NvmlUsedBytes() {
  static void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (lib == nullptr) return -1;
  using InitFn = int (*)();
  using HandleFn = int (*)(unsigned, void**);
  struct Memory {
    unsigned long long total, free, used;
  };
  using MemoryFn = int (*)(void*, Memory*);
  auto init = reinterpret_cast<InitFn>(dlsym(lib, "nvmlInit_v2"));
  auto handle = reinterpret_cast<HandleFn>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
  auto memory = reinterpret_cast<MemoryFn>(dlsym(lib, "nvmlDeviceGetMemoryInfo"));
  if (init == nullptr || handle == nullptr || memory == nullptr || init() != 0) return -1;
  void* device = nullptr;
  Memory m{};
  // NVML index 0 is the first physical GPU, which is the one CUDA device 0 is when
  // CUDA_VISIBLE_DEVICES is unset (the script runs this command that way).
  if (handle(0, &device) != 0 || memory(device, &m) != 0) return -1;
  return static_cast<long long>(m.used);
}

struct Info {
  size_t free_bytes = 0;
  size_t total = 0;
};

Info MemInfo() {
  Info i;
  Check(cuMemGetInfo(&i.free_bytes, &i.total), "cuMemGetInfo");
  return i;
}

// One allocation path: allocates a piece, and frees everything it allocated.
struct Api {
  virtual ~Api() = default;
  virtual CUresult Allocate(size_t bytes) = 0;
  virtual void FreeAll() = 0;
};

struct PlainAlloc : Api {
  std::vector<CUdeviceptr> ptrs;
  CUresult Allocate(size_t bytes) override {
    CUdeviceptr p = 0;
    const CUresult r = cuMemAlloc(&p, bytes);
    if (r == CUDA_SUCCESS) ptrs.push_back(p);
    return r;
  }
  void FreeAll() override {
    for (CUdeviceptr p : ptrs) Check(cuMemFree(p), "cuMemFree");
    ptrs.clear();
  }
};

struct PitchAlloc : PlainAlloc {
  CUresult Allocate(size_t bytes) override {
    // 64 KiB rows are already aligned to any pitch the driver picks, so pitch * height == bytes.
    CUdeviceptr p = 0;
    size_t pitch = 0;
    const CUresult r = cuMemAllocPitch(&p, &pitch, 65536, bytes / 65536, 4);
    if (r == CUDA_SUCCESS) ptrs.push_back(p);
    return r;
  }
};

struct ManagedAlloc : PlainAlloc {
  CUresult Allocate(size_t bytes) override {
    CUdeviceptr p = 0;
    const CUresult r = cuMemAllocManaged(&p, bytes, CU_MEM_ATTACH_GLOBAL);
    if (r == CUDA_SUCCESS) {
      ptrs.push_back(p);
      // Managed memory takes physical pages only when touched; a memset on the device makes the
      // physical figure comparable with the charged one.
      Check(cuMemsetD8(p, 1, bytes), "cuMemsetD8 (managed)");
      Check(cuCtxSynchronize(), "cuCtxSynchronize");
    }
    return r;
  }
};

// cuMemAllocAsync on the device's default pool, or cuMemAllocFromPoolAsync on a pool of our own.
struct PoolAlloc : Api {
  CUstream stream = nullptr;
  CUmemoryPool pool = nullptr;
  bool own_pool = false;
  std::vector<CUdeviceptr> ptrs;

  explicit PoolAlloc(bool own) : own_pool(own) {
    Check(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    if (own_pool) {
      CUmemPoolProps props{};
      props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
      props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
      props.location.id = 0;
      Check(cuMemPoolCreate(&pool, &props), "cuMemPoolCreate");
    } else {
      Check(cuDeviceGetDefaultMemPool(&pool, 0), "cuDeviceGetDefaultMemPool");
    }
  }
  ~PoolAlloc() override {
    if (own_pool) cuMemPoolDestroy(pool);
    cuStreamDestroy(stream);
  }
  CUresult Allocate(size_t bytes) override {
    CUdeviceptr p = 0;
    CUresult r = own_pool ? cuMemAllocFromPoolAsync(&p, bytes, pool, stream)
                          : cuMemAllocAsync(&p, bytes, stream);
    // Stream-ordered allocation may report the failure at the synchronize instead.
    if (r == CUDA_SUCCESS) r = cuStreamSynchronize(stream);
    if (r == CUDA_SUCCESS) ptrs.push_back(p);
    return r;
  }
  void FreeAll() override {
    for (CUdeviceptr p : ptrs) Check(cuMemFreeAsync(p, stream), "cuMemFreeAsync");
    ptrs.clear();
    Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
    // Without a trim the pool keeps the physical memory for reuse and the next API would start
    // with the card fuller than this one did.
    Check(cuMemPoolTrimTo(pool, 0), "cuMemPoolTrimTo");
  }
};

struct VmmAlloc : Api {
  struct Piece {
    CUmemGenericAllocationHandle handle;
    CUdeviceptr va;
    size_t bytes;
  };
  std::vector<Piece> pieces;
  CUresult Allocate(size_t bytes) override {
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t granularity = 0;
    Check(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
          "cuMemGetAllocationGranularity");
    bytes = (bytes + granularity - 1) / granularity * granularity;
    CUmemGenericAllocationHandle handle = 0;
    const CUresult r = cuMemCreate(&handle, bytes, &prop, 0);
    if (r != CUDA_SUCCESS) return r;
    // Map it as a real user would, so the handle is backed and usable, not just reserved.
    CUdeviceptr va = 0;
    Check(cuMemAddressReserve(&va, bytes, 0, 0, 0), "cuMemAddressReserve");
    Check(cuMemMap(va, bytes, 0, handle, 0), "cuMemMap");
    CUmemAccessDesc access{};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    Check(cuMemSetAccess(va, bytes, &access, 1), "cuMemSetAccess");
    pieces.push_back(Piece{handle, va, bytes});
    return r;
  }
  void FreeAll() override {
    for (const Piece& p : pieces) {
      Check(cuMemUnmap(p.va, p.bytes), "cuMemUnmap");
      Check(cuMemRelease(p.handle), "cuMemRelease");
      Check(cuMemAddressFree(p.va, p.bytes), "cuMemAddressFree");
    }
    pieces.clear();
  }
};

struct ArrayAlloc : Api {
  std::vector<CUarray> arrays;
  bool three_d;
  explicit ArrayAlloc(bool is_3d) : three_d(is_3d) {}
  CUresult Allocate(size_t bytes) override {
    CUarray a = nullptr;
    CUresult r;
    if (three_d) {
      CUDA_ARRAY3D_DESCRIPTOR d{};
      d.Width = 1024;
      d.Height = 1024;
      d.Depth = bytes / (1024 * 1024 * 4);
      d.Format = CU_AD_FORMAT_FLOAT;
      d.NumChannels = 1;
      r = cuArray3DCreate(&a, &d);
    } else {
      CUDA_ARRAY_DESCRIPTOR d{};
      d.Width = 8192;
      d.Height = bytes / (8192 * 4);
      d.Format = CU_AD_FORMAT_FLOAT;
      d.NumChannels = 1;
      r = cuArrayCreate(&a, &d);
    }
    if (r == CUDA_SUCCESS) arrays.push_back(a);
    return r;
  }
  void FreeAll() override {
    for (CUarray a : arrays) Check(cuArrayDestroy(a), "cuArrayDestroy");
    arrays.clear();
  }
};

struct MipmapAlloc : Api {
  std::vector<CUmipmappedArray> arrays;
  CUresult Allocate(size_t bytes) override {
    CUDA_ARRAY3D_DESCRIPTOR d{};
    d.Width = 8192;
    d.Height = bytes / (8192 * 4);
    d.Format = CU_AD_FORMAT_FLOAT;
    d.NumChannels = 1;
    CUmipmappedArray a = nullptr;
    // One level: the requested bytes are then exactly the image, comparable with the others.
    const CUresult r = cuMipmappedArrayCreate(&a, &d, 1);
    if (r == CUDA_SUCCESS) arrays.push_back(a);
    return r;
  }
  void FreeAll() override {
    for (CUmipmappedArray a : arrays) Check(cuMipmappedArrayDestroy(a), "cuMipmappedArrayDestroy");
    arrays.clear();
  }
};

Api* MakeApi(const std::string& name) {
  if (name == "cuMemAlloc") return new PlainAlloc;
  if (name == "cuMemAllocPitch") return new PitchAlloc;
  if (name == "cuMemAllocManaged") return new ManagedAlloc;
  if (name == "cuMemAllocAsync") return new PoolAlloc(false);
  if (name == "cuMemAllocFromPoolAsync") return new PoolAlloc(true);
  if (name == "cuMemCreate") return new VmmAlloc;
  if (name == "cuArrayCreate") return new ArrayAlloc(false);
  if (name == "cuArray3DCreate") return new ArrayAlloc(true);
  if (name == "cuMipmappedArrayCreate") return new MipmapAlloc;
  return nullptr;
}

const char* const kAllApis[] = {
    "cuMemAlloc",      "cuMemAllocPitch",         "cuMemAllocManaged",
    "cuMemAllocAsync", "cuMemAllocFromPoolAsync", "cuMemCreate",
    "cuArrayCreate",   "cuArray3DCreate",         "cuMipmappedArrayCreate"};

void StartContext(CUcontext* ctx) {
  Check(cuInit(0), "cuInit");
  CUdevice dev = 0;
  Check(cuDeviceGet(&dev, 0), "cuDeviceGet");
  Check(cuDevicePrimaryCtxRetain(ctx, dev), "cuDevicePrimaryCtxRetain");
  Check(cuCtxSetCurrent(*ctx), "cuCtxSetCurrent");
}

int Context(const char* wait_file) {
  const long long before = NvmlUsedBytes();
  CUcontext ctx = nullptr;
  StartContext(&ctx);
  // The driver finishes setting a context up lazily; a synchronize makes it do so now.
  Check(cuCtxSynchronize(), "cuCtxSynchronize");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const long long after = NvmlUsedBytes();
  printf("nvml_used_before=%lld nvml_used_after=%lld nvml_delta=%lld\n", before, after,
         before >= 0 && after >= 0 ? after - before : -1);
  printf("ready pid=%d\n", static_cast<int>(getpid()));
  fflush(stdout);
  if (wait_file != nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (access(wait_file, F_OK) != 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return 0;
}

int Fill(size_t chunk, const std::vector<std::string>& apis) {
  CUcontext ctx = nullptr;
  StartContext(&ctx);
  int failures = 0;
  for (const std::string& name : apis) {
    Api* api = MakeApi(name);
    if (api == nullptr) {
      fprintf(stderr, "alloc_apis: unknown API '%s'\n", name.c_str());
      return 2;
    }
    const Info before = MemInfo();
    const long long phys_before = PhysicalUsedMiB();
    unsigned long long total = 0;
    int pieces = 0;
    CUresult r = CUDA_SUCCESS;
    // The limit is finite, but a broken interposer would let this run to the card's size; stop
    // at 4096 pieces (1 TiB at 256 MiB) rather than loop forever.
    while (pieces < 4096 && (r = api->Allocate(chunk)) == CUDA_SUCCESS) {
      total += chunk;
      ++pieces;
    }
    const Info peak = MemInfo();
    const long long phys_peak = PhysicalUsedMiB();
    api->FreeAll();
    delete api;
    const Info after = MemInfo();
    printf(
        "api=%s pieces=%d filled=%llu last_result=%s "
        "info_total=%zu free_before=%zu free_peak=%zu free_after=%zu "
        "phys_before_mib=%lld phys_peak_mib=%lld\n",
        name.c_str(), pieces, total, ErrorName(r), before.total, before.free_bytes, peak.free_bytes,
        after.free_bytes, phys_before, phys_peak);
    fflush(stdout);
    if (r != CUDA_ERROR_OUT_OF_MEMORY) ++failures;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "context") == 0) return Context(argc >= 3 ? argv[2] : nullptr);
  if (argc >= 3 && strcmp(argv[1], "fill") == 0) {
    const size_t chunk = strtoull(argv[2], nullptr, 10) * kMiB;
    if (chunk == 0) {
      fprintf(stderr, "alloc_apis: CHUNK_MIB must be a positive number\n");
      return 2;
    }
    std::vector<std::string> apis(argv + 3, argv + argc);
    if (apis.empty()) apis.assign(std::begin(kAllApis), std::end(kAllApis));
    return Fill(chunk, apis);
  }
  fprintf(stderr,
          "usage: alloc_apis context [WAIT_FILE]\n"
          "       alloc_apis fill CHUNK_MIB [API...]\n");
  return 2;
}
