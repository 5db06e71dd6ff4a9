// The simulated driver's memory entry points. Every path charges the device's shared memory
// counter (sim_state.h) so processes together cannot exceed a card; addresses are fake and never
// backed by host memory.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "runtime/array_size.h"
#include "sim/sim_process.h"
#include "sim/sim_timeline.h"

namespace gpufrac::sim {
namespace {

constexpr uint64_t kPitchAlignment = 512;
constexpr uint64_t kIpcMagic = 0x4750465249504321ull;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

CUresult CurrentOrdinal(int* ordinal) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  Context* c = CurrentContext();
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *ordinal = c->ordinal;
  return CUDA_SUCCESS;
}

void ReleaseDuePools();

// Allocates `bytes` on `ordinal` and records it under a new address (or handle when `as_handle`).
CUresult AllocateRecorded(int ordinal, uint64_t bytes, bool as_handle, unsigned long long* out) {
  if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(Proc().mu);
  ReleaseDuePools();
  if (!State().Allocate(Physical(ordinal), bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  const uint64_t key = as_handle ? Proc().next_handle++ : NewAddress(bytes);
  Proc().allocations[key] = Allocation{ordinal, bytes, nullptr, true};
  *out = key;
  return CUDA_SUCCESS;
}

// A pool the caller may still use, or null once it is destroyed. Caller holds Proc().mu.
Pool* LivePool(CUmemoryPool handle) {
  auto* pool = reinterpret_cast<Pool*>(handle);
  return pool == nullptr || pool->destroyed ? nullptr : pool;
}

// Gives a destroyed pool's whole reservation back to the card and its object to the next
// cuMemPoolCreate. Caller holds Proc().mu.
void ReleaseDestroyedPool(Pool* pool) {
  State().Free(Physical(pool->ordinal), pool->reserved);
  pool->reserved = 0;
  Proc().released_pools.push_back(pool);
}

// Releases the destroyed pools whose last free the device has reached. Caller holds Proc().mu.
void ReleaseDuePools() {
  std::vector<Pool*>& releasing = Proc().releasing_pools;
  if (releasing.empty()) return;
  const uint64_t now = NowNs();
  for (size_t i = 0; i < releasing.size();) {
    if (releasing[i]->release_at_ns > now) {
      ++i;
      continue;
    }
    releasing[i]->release_at_ns = 0;
    ReleaseDestroyedPool(releasing[i]);
    releasing.erase(releasing.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

// Frees a stream-ordered allocation: its memory stays cached in the pool until a synchronization
// or trim, unless the pool was destroyed and this was its last allocation. `ordered`: the free
// was queued on a stream (cuMemFreeAsync), so it happens, and a destroyed pool is released, only
// when the device has run the work queued before it, as on a real GPU. Caller holds Proc().mu.
void ReturnToPool(const Allocation& allocation, bool ordered) {
  Pool* pool = allocation.pool;
  pool->used -= allocation.bytes;
  if (!pool->destroyed || pool->used != 0) return;
  const uint64_t reached = ordered ? LastFinishNs(pool->ordinal) : 0;
  if (reached > NowNs()) {
    pool->release_at_ns = reached;
    Proc().releasing_pools.push_back(pool);
  } else {
    ReleaseDestroyedPool(pool);
  }
}

// Frees a recorded allocation or handle. `pool_memory_too`: stream-ordered allocations are
// accepted (cuMemFree takes them, as the real driver's does; cuMemRelease and the rest do not).
CUresult FreeRecorded(uint64_t key, bool pool_memory_too = false) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  auto it = Proc().allocations.find(key);
  if (it == Proc().allocations.end()) return CUDA_ERROR_INVALID_VALUE;
  if (it->second.pool != nullptr) {
    if (!pool_memory_too) return CUDA_ERROR_INVALID_VALUE;
    ReturnToPool(it->second, false);
  } else if (it->second.charged) {
    State().Free(Physical(it->second.ordinal), it->second.bytes);
  }
  Proc().allocations.erase(it);
  return CUDA_SUCCESS;
}

// The allocation whose address range holds `ptr`, or null. Caller holds Proc().mu.
const std::pair<const uint64_t, Allocation>* FindAddress(CUdeviceptr ptr) {
  auto& allocations = Proc().allocations;
  if (auto it = allocations.find(ptr); it != allocations.end()) return &*it;
  auto inside = std::find_if(allocations.begin(), allocations.end(), [&](const auto& entry) {
    return entry.first < ptr && ptr - entry.first < entry.second.bytes;
  });
  return inside == allocations.end() ? nullptr : &*inside;
}

// Releases what a pool caches beyond max(used, keep). Caller holds Proc().mu.
void TrimPool(Pool* pool, uint64_t keep) {
  const uint64_t floor = pool->used > keep ? pool->used : keep;
  // Checked before rounding: a threshold near UINT64_MAX (keep everything) would wrap to 0.
  if (floor >= pool->reserved) return;
  const uint64_t target = RoundUp(floor, kGranularity);
  if (pool->reserved > target) {
    State().Free(Physical(pool->ordinal), pool->reserved - target);
    pool->reserved = target;
  }
}

CUresult AllocateFromPool(CUdeviceptr* dptr, size_t bytes, CUmemoryPool handle) {
  if (dptr == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(Proc().mu);
  ReleaseDuePools();
  Pool* pool = LivePool(handle);
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const uint64_t cached = pool->reserved - pool->used;
  if (cached < bytes) {
    const uint64_t growth = RoundUp(bytes - cached, kGranularity);
    if (!State().Allocate(Physical(pool->ordinal), growth)) return CUDA_ERROR_OUT_OF_MEMORY;
    pool->reserved += growth;
  }
  pool->used += bytes;
  const uint64_t address = NewAddress(bytes);
  Proc().allocations[address] = Allocation{pool->ordinal, bytes, pool, true};
  *dptr = address;
  return CUDA_SUCCESS;
}

}  // namespace

CUresult RunFree(CUdeviceptr dptr);

void RunCapturedFree(CUdeviceptr dptr) {
  std::lock_guard lock(Proc().mu);
  RunFree(dptr);  // a second launch of the graph finds it freed already: nothing to do
}

void ReleaseCachedPools() {
  Process& p = Proc();
  std::lock_guard lock(p.mu);
  ReleaseDuePools();
  for (Pool* pool : p.pools) TrimPool(pool, pool->release_threshold);
}

}  // namespace gpufrac::sim

using namespace gpufrac;
using namespace gpufrac::sim;

SIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  if (dptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  return AllocateRecorded(ordinal, bytes, false, dptr);
}

SIM_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width,
                                       size_t height, unsigned int element_bytes) {
  if (dptr == nullptr || pitch == nullptr || width == 0 || height == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (element_bytes != 4 && element_bytes != 8 && element_bytes != 16) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  const uint64_t row = RoundUp(width, kPitchAlignment);
  CUresult r = AllocateRecorded(ordinal, row * height, false, dptr);
  if (r == CUDA_SUCCESS) *pitch = row;
  return r;
}

SIM_EXPORT CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytes, unsigned int) {
  if (dptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  return AllocateRecorded(ordinal, bytes, false, dptr);
}

SIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
  if (dptr == 0) return CUDA_SUCCESS;
  return FreeRecorded(dptr, /*pool_memory_too=*/true);
}

SIM_EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* bytes, CUdeviceptr dptr) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  const auto* found = FindAddress(dptr);
  if (found == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (base != nullptr) *base = found->first;
  if (bytes != nullptr) *bytes = found->second.bytes;
  return CUDA_SUCCESS;
}

// The attributes gpufrac and its tests read; the rest are not simulated.
SIM_EXPORT CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute,
                                          CUdeviceptr ptr) {
  if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  const auto* found = FindAddress(ptr);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Allocation& allocation = found->second;
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
      *static_cast<int*>(data) = allocation.ordinal;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
      *static_cast<CUdeviceptr*>(data) = found->first;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
      *static_cast<size_t*>(data) = allocation.bytes;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
      // A destroyed pool's handle too, while its allocations are outstanding.
      *static_cast<CUmemoryPool*>(data) = reinterpret_cast<CUmemoryPool>(allocation.pool);
      return CUDA_SUCCESS;
    default:
      return CUDA_ERROR_NOT_SUPPORTED;
  }
}

SIM_EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  State().ReapDead();
  {
    std::lock_guard lock(Proc().mu);
    ReleaseDuePools();
  }
  const SimDevice& d = State().shared()->devices[Physical(ordinal)];
  const uint64_t used = d.used_bytes.load();
  *total_bytes = d.total_bytes;
  *free_bytes = used < d.total_bytes ? d.total_bytes - used : 0;
  return CUDA_SUCCESS;
}

// --- stream-ordered allocation ---

SIM_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice dev) {
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckOrdinal(dev); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  Pool*& p = Proc().default_pools[static_cast<size_t>(dev)];
  if (p == nullptr) {
    p = new Pool{dev};
    Proc().pools.push_back(p);
  }
  *pool = reinterpret_cast<CUmemoryPool>(p);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* props) {
  if (pool == nullptr || props == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (props->location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_NOT_SUPPORTED;
  if (CUresult r = CheckOrdinal(props->location.id); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  ReleaseDuePools();
  std::vector<Pool*>& released = Proc().released_pools;
  Pool* p = nullptr;
  if (released.empty()) {
    p = new Pool{props->location.id};
  } else {
    p = released.back();  // the same handle value again
    released.pop_back();
    *p = Pool{props->location.id};
  }
  Proc().pools.push_back(p);
  *pool = reinterpret_cast<CUmemoryPool>(p);
  return CUDA_SUCCESS;
}

// As the real driver: a pool with allocations outstanding keeps its memory until the last of
// them is freed; one without releases everything now. The object is never deleted, so a stale
// handle stays safe to look at.
SIM_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool) {
  std::lock_guard lock(Proc().mu);
  Pool* p = LivePool(pool);
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const std::vector<Pool*>& defaults = Proc().default_pools;
  if (std::find(defaults.begin(), defaults.end(), p) != defaults.end()) {
    return CUDA_ERROR_INVALID_VALUE;  // a device's default pool cannot be destroyed
  }
  std::vector<Pool*>& pools = Proc().pools;
  pools.erase(std::remove(pools.begin(), pools.end(), p), pools.end());
  p->destroyed = true;
  if (p->used == 0) ReleaseDestroyedPool(p);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t keep) {
  std::lock_guard lock(Proc().mu);
  Pool* p = LivePool(pool);
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  TrimPool(p, keep);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                          void* value) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(Proc().mu);
  Pool* p = LivePool(pool);
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto* out = static_cast<cuuint64_t*>(value);
  switch (attr) {
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
      *out = p->reserved;
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
      *out = p->used;
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
      *out = p->release_threshold;
      return CUDA_SUCCESS;
    default:
      return CUDA_ERROR_NOT_SUPPORTED;
  }
}

SIM_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                          void* value) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(Proc().mu);
  Pool* p = LivePool(pool);
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (attr == CU_MEMPOOL_ATTR_RELEASE_THRESHOLD) {
    p->release_threshold = *static_cast<cuuint64_t*>(value);
  }
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                                            CUstream) {
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  return AllocateFromPool(dptr, bytes, pool);
}
SIM_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                                                 CUstream s) {
  return cuMemAllocFromPoolAsync(dptr, bytes, pool, s);
}

SIM_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytes, CUstream) {
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  CUmemoryPool pool = nullptr;
  if (CUresult r = cuDeviceGetDefaultMemPool(&pool, ordinal); r != CUDA_SUCCESS) return r;
  return AllocateFromPool(dptr, bytes, pool);
}
SIM_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytes, CUstream s) {
  return cuMemAllocAsync(dptr, bytes, s);
}

// The free as the device runs it: after the work queued before it. Caller holds Proc().mu.
CUresult gpufrac::sim::RunFree(CUdeviceptr dptr) {
  auto it = Proc().allocations.find(dptr);
  if (it == Proc().allocations.end()) return CUDA_ERROR_INVALID_VALUE;
  if (it->second.pool != nullptr) {
    ReturnToPool(it->second, true);
  } else if (it->second.charged) {
    State().Free(Physical(it->second.ordinal), it->second.bytes);
  }
  Proc().allocations.erase(it);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream stream) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  if (Proc().allocations.count(dptr) == 0) return CUDA_ERROR_INVALID_VALUE;
  // Captured: a free node of the graph, run at each launch (once it has run, later launches find
  // nothing to free), not now.
  if (CaptureFree(stream, dptr)) return CUDA_SUCCESS;
  return RunFree(dptr);
}
SIM_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream s) {
  return cuMemFreeAsync(dptr, s);
}

// --- virtual memory management ---

SIM_EXPORT CUresult cuMemGetAllocationGranularity(size_t* granularity, const CUmemAllocationProp*,
                                                  int) {
  if (granularity == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *granularity = kGranularity;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t bytes,
                                const CUmemAllocationProp* prop, unsigned long long) {
  if (handle == nullptr || prop == nullptr || bytes == 0 || bytes % kGranularity != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_NOT_SUPPORTED;
  // No current context needed: the device comes from the allocation's location.
  if (CUresult r = CheckOrdinal(prop->location.id); r != CUDA_SUCCESS) return r;
  return AllocateRecorded(prop->location.id, bytes, true, handle);
}

SIM_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  return FreeRecorded(handle);
}

SIM_EXPORT CUresult cuMemAddressReserve(CUdeviceptr* ptr, size_t bytes, size_t, CUdeviceptr,
                                        unsigned long long) {
  if (ptr == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  *ptr = NewAddress(bytes);
  return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuMemAddressFree(CUdeviceptr, size_t) { return CheckInit(); }
SIM_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t, size_t, CUmemGenericAllocationHandle handle,
                             unsigned long long) {
  if (ptr == 0 || handle == 0) return CUDA_ERROR_INVALID_VALUE;
  return CheckInit();
}
SIM_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t) {
  return ptr == 0 ? CUDA_ERROR_INVALID_VALUE : CheckInit();
}
SIM_EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t, const void*, size_t) {
  return ptr == 0 ? CUDA_ERROR_INVALID_VALUE : CheckInit();
}

// Shareable handles travel as a pipe whose buffer carries the allocation's device and size; the
// importer gets a handle that maps the same memory and is not charged again.
SIM_EXPORT CUresult cuMemExportToShareableHandle(void* shareable,
                                                 CUmemGenericAllocationHandle handle,
                                                 CUmemAllocationHandleType type,
                                                 unsigned long long) {
  if (shareable == nullptr || type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::lock_guard lock(Proc().mu);
  auto it = Proc().allocations.find(handle);
  if (it == Proc().allocations.end()) return CUDA_ERROR_INVALID_HANDLE;
  int fds[2];
  if (pipe(fds) != 0) return CUDA_ERROR_UNKNOWN;
  const uint64_t record[2] = {static_cast<uint64_t>(it->second.ordinal), it->second.bytes};
  if (write(fds[1], record, sizeof record) != static_cast<ssize_t>(sizeof record)) {
    close(fds[0]);
    close(fds[1]);
    return CUDA_ERROR_UNKNOWN;
  }
  close(fds[1]);
  *static_cast<int*>(shareable) = fds[0];
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle* handle,
                                                   void* shareable,
                                                   CUmemAllocationHandleType type) {
  if (handle == nullptr || type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(shareable));
  uint64_t record[2];
  if (read(fd, record, sizeof record) != static_cast<ssize_t>(sizeof record)) {
    return CUDA_ERROR_INVALID_HANDLE;
  }
  std::lock_guard lock(Proc().mu);
  const uint64_t key = Proc().next_handle++;
  Proc().allocations[key] = Allocation{static_cast<int>(record[0]), record[1], nullptr, false};
  *handle = key;
  return CUDA_SUCCESS;
}

// --- IPC: the handle names the exporting allocation; opening maps it without a new charge ---

SIM_EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle* handle, CUdeviceptr dptr) {
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(Proc().mu);
  auto it = Proc().allocations.find(dptr);
  if (it == Proc().allocations.end()) return CUDA_ERROR_INVALID_VALUE;
  const uint64_t record[4] = {kIpcMagic, static_cast<uint64_t>(it->second.ordinal),
                              it->second.bytes, dptr};
  memset(handle, 0, sizeof *handle);
  memcpy(handle->reserved, record, sizeof record);
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr* dptr, CUipcMemHandle handle, unsigned int) {
  if (dptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  uint64_t record[4];
  memcpy(record, handle.reserved, sizeof record);
  if (record[0] != kIpcMagic) return CUDA_ERROR_INVALID_HANDLE;
  std::lock_guard lock(Proc().mu);
  const uint64_t address = NewAddress(record[2]);
  Proc().allocations[address] = Allocation{static_cast<int>(record[1]), record[2], nullptr, false};
  *dptr = address;
  return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuIpcOpenMemHandle(CUdeviceptr* dptr, CUipcMemHandle handle, unsigned int f) {
  return cuIpcOpenMemHandle_v2(dptr, handle, f);
}

SIM_EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr dptr) { return FreeRecorded(dptr); }

// --- arrays ---

static CUresult CreateArray(void** handle, int ordinal, uint64_t bytes) {
  unsigned long long key = 0;
  CUresult r = AllocateRecorded(ordinal, bytes, true, &key);
  if (r == CUDA_SUCCESS) *handle = reinterpret_cast<void*>(key);
  return r;
}

SIM_EXPORT CUresult cuArrayCreate_v2(CUarray* array, const CUDA_ARRAY_DESCRIPTOR* d) {
  if (array == nullptr || d == nullptr || d->Width == 0) return CUDA_ERROR_INVALID_VALUE;
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  return CreateArray(reinterpret_cast<void**>(array), ordinal,
                     ArrayBytes(d->Width, d->Height, 0, d->Format, d->NumChannels));
}

SIM_EXPORT CUresult cuArray3DCreate_v2(CUarray* array, const CUDA_ARRAY3D_DESCRIPTOR* d) {
  if (array == nullptr || d == nullptr || d->Width == 0) return CUDA_ERROR_INVALID_VALUE;
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  return CreateArray(reinterpret_cast<void**>(array), ordinal,
                     ArrayBytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels));
}

SIM_EXPORT CUresult cuArrayDestroy(CUarray array) {
  if (array == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return FreeRecorded(reinterpret_cast<uint64_t>(array));
}

SIM_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray* array,
                                           const CUDA_ARRAY3D_DESCRIPTOR* d, unsigned int levels) {
  if (array == nullptr || d == nullptr || d->Width == 0) return CUDA_ERROR_INVALID_VALUE;
  int ordinal = 0;
  if (CUresult r = CurrentOrdinal(&ordinal); r != CUDA_SUCCESS) return r;
  return CreateArray(reinterpret_cast<void**>(array), ordinal, MipmappedArrayBytes(*d, levels));
}

SIM_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray array) {
  if (array == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return FreeRecorded(reinterpret_cast<uint64_t>(array));
}
