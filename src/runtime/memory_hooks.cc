// Hooks on every device-memory allocation path. Each one charges the tenant *before* asking the
// driver (so concurrent processes cannot overshoot), and gives the charge back if the driver
// refuses. Frees credit what the allocation table says the allocation charged.
#include <pthread.h>

#include <cstdint>
#include <type_traits>

#include "runtime/alloc_table.h"
#include "runtime/array_size.h"
#include "runtime/interposer.h"

namespace gpufrac::runtime {
namespace {

constexpr uint64_t kPitchAlignment = 512;
constexpr uint64_t kPoolGranule = 2ull << 20;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

bool Enforcing() { return GetConfig().managed; }

// Charges, allocates through `allocate`, records. One path for every allocator of fixed size.
template <typename Allocate, typename Handle>
int ChargedAllocation(int ordinal, uint64_t bytes, AllocKind kind, Allocate allocate,
                      Handle* handle_out) {
  if (ordinal < 0) return allocate();  // no context: the driver reports the error
  if (const int refused = ChargeDevice(ordinal, bytes); refused != CUDA_SUCCESS) return refused;
  const int r = allocate();
  if (r != CUDA_SUCCESS) {
    Credit(ordinal, bytes);
    return r;
  }
  uint64_t key = 0;
  if constexpr (std::is_pointer_v<Handle>) {
    key = reinterpret_cast<uintptr_t>(*handle_out);
  } else {
    key = *handle_out;
  }
  Allocations().Insert(kind, key, AllocRecord{bytes, ordinal});
  return r;
}

int CreditRecorded(AllocKind kind, uint64_t handle) {
  AllocRecord record{};
  if (Allocations().Take(kind, handle, &record)) Credit(record.ordinal, record.bytes);
  return CUDA_SUCCESS;
}

// --- stream-ordered pools: charged by how much the pool's reservation grows ---

struct PoolCharge {
  CUmemoryPool pool;
  int ordinal;
  uint64_t charged;  // what this process has charged for the pool's reservation
};
constexpr int kMaxPools = 64;
PoolCharge g_pools[kMaxPools];
int g_pool_count = 0;
bool g_pools_may_shrink = false;
pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;

using PoolAttrFn = int (*)(CUmemoryPool, CUmemPool_attribute, void*);
using DeviceGetPoolFn = int (*)(CUmemoryPool*, CUdevice);

uint64_t PoolAttribute(CUmemoryPool pool, CUmemPool_attribute attribute) {
  static PoolAttrFn get_attr = nullptr;
  if (get_attr == nullptr) {
    get_attr = reinterpret_cast<PoolAttrFn>(RealDriverSymbol("cuMemPoolGetAttribute"));
  }
  cuuint64_t value = 0;
  if (get_attr == nullptr || get_attr(pool, attribute, &value) != CUDA_SUCCESS) return 0;
  return value;
}

uint64_t PoolReserved(CUmemoryPool pool) {
  return PoolAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT);
}

PoolCharge* FindPool(CUmemoryPool pool, int ordinal) {  // g_pool_mu held
  for (int i = 0; i < g_pool_count; ++i) {
    if (g_pools[i].pool == pool) return &g_pools[i];
  }
  if (g_pool_count == kMaxPools) return nullptr;
  g_pools[g_pool_count] = PoolCharge{pool, ordinal, 0};
  return &g_pools[g_pool_count++];
}

// Brings a pool's charge in line with its real reservation. g_pool_mu held.
void Reconcile(PoolCharge& p) {
  const uint64_t reserved = PoolReserved(p.pool);
  if (reserved > p.charged) {
    // Growth beyond the estimate (at most one granule): charged after the fact, unconditionally.
    if (ChargeDevice(p.ordinal, reserved - p.charged) != CUDA_SUCCESS) {
      Log(LogLevel::kDebug, "pool grew %llu bytes past its estimate",
          static_cast<unsigned long long>(reserved - p.charged));
    }
  } else if (reserved < p.charged) {
    Credit(p.ordinal, p.charged - reserved);
  }
  p.charged = reserved;
}

void ReconcileAllPools() {
  if (!Enforcing() || !__atomic_load_n(&g_pools_may_shrink, __ATOMIC_ACQUIRE)) return;
  pthread_mutex_lock(&g_pool_mu);
  for (int i = 0; i < g_pool_count; ++i) Reconcile(g_pools[i]);
  g_pools_may_shrink = false;
  pthread_mutex_unlock(&g_pool_mu);
}

template <typename Allocate>
int PoolAllocation(CUmemoryPool pool, int ordinal, uint64_t bytes, Allocate allocate) {
  pthread_mutex_lock(&g_pool_mu);
  PoolCharge* p = FindPool(pool, ordinal);
  if (p == nullptr) {
    pthread_mutex_unlock(&g_pool_mu);
    Log(LogLevel::kError, "more than %d memory pools: refusing to allocate untracked", kMaxPools);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  Reconcile(*p);
  int r = CUDA_ERROR_OUT_OF_MEMORY;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The most the reservation can grow by: the request less what the pool has cached.
    const uint64_t used = PoolAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT);
    const uint64_t cached = p->charged > used ? p->charged - used : 0;
    const uint64_t growth = bytes > cached ? RoundUp(bytes - cached, kPoolGranule) : 0;
    if (growth == 0 || ChargeDevice(ordinal, growth) == CUDA_SUCCESS) {
      p->charged += growth;
      r = allocate();
      Reconcile(*p);  // the real growth replaces the estimate, whether or not it succeeded
      break;
    }
    if (attempt == 0) {
      // At the limit: give back what the pool caches unused, then try once more.
      auto trim = REAL(cuMemPoolTrimTo);
      if (trim == nullptr) break;
      trim(pool, 0);
      Reconcile(*p);
    }
  }
  pthread_mutex_unlock(&g_pool_mu);
  return r;
}

CUmemoryPool CurrentPool(int ordinal) {
  static DeviceGetPoolFn get_pool = nullptr;
  if (get_pool == nullptr) {
    get_pool = reinterpret_cast<DeviceGetPoolFn>(RealDriverSymbol("cuDeviceGetMemPool"));
    if (get_pool == nullptr) {
      get_pool = reinterpret_cast<DeviceGetPoolFn>(RealDriverSymbol("cuDeviceGetDefaultMemPool"));
    }
  }
  CUmemoryPool pool = nullptr;
  if (get_pool != nullptr) get_pool(&pool, ordinal);
  return pool;
}

template <typename RealFn>
int AllocAsync(RealFn real, CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing()) return real(dptr, bytes, stream);
  const int ordinal = CurrentOrdinal();
  CUmemoryPool pool = ordinal >= 0 ? CurrentPool(ordinal) : nullptr;
  if (pool == nullptr) return real(dptr, bytes, stream);
  return PoolAllocation(pool, ordinal, bytes, [&] { return real(dptr, bytes, stream); });
}

template <typename RealFn>
int AllocFromPool(RealFn real, CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                  CUstream stream) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || pool == nullptr) return real(dptr, bytes, pool, stream);
  // A pool's device is where its memory lives; the current device is the best cheap guess
  // until the pool is known, after which its first ordinal sticks.
  const int ordinal = CurrentOrdinal();
  if (ordinal < 0) return real(dptr, bytes, pool, stream);
  return PoolAllocation(pool, ordinal, bytes, [&] { return real(dptr, bytes, pool, stream); });
}

template <typename RealFn>
int FreeAsync(RealFn real, CUdeviceptr dptr, CUstream stream) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(dptr, stream);
  // Pool memory returns to the pool, not the card, until a synchronization or trim releases it.
  if (r == CUDA_SUCCESS) __atomic_store_n(&g_pools_may_shrink, true, __ATOMIC_RELEASE);
  return r;
}

}  // namespace

void ResetPoolsAfterFork() {
  g_pool_count = 0;
  g_pools_may_shrink = false;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_pool_mu = fresh;
}

}  // namespace gpufrac::runtime

using namespace gpufrac;
using namespace gpufrac::runtime;

GPUFRAC_EXPORT int cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  auto real = REAL(cuMemAlloc_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dptr == nullptr || bytes == 0) return real(dptr, bytes);
  return ChargedAllocation(
      CurrentOrdinal(), bytes, AllocKind::kDevicePointer, [&] { return real(dptr, bytes); }, dptr);
}

GPUFRAC_EXPORT int cuMemAllocManaged(CUdeviceptr* dptr, size_t bytes, unsigned int flags) {
  auto real = REAL(cuMemAllocManaged);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dptr == nullptr || bytes == 0) return real(dptr, bytes, flags);
  return ChargedAllocation(
      CurrentOrdinal(), bytes, AllocKind::kDevicePointer, [&] { return real(dptr, bytes, flags); },
      dptr);
}

GPUFRAC_EXPORT int cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width, size_t height,
                                      unsigned int elem) {
  auto real = REAL(cuMemAllocPitch_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dptr == nullptr || pitch == nullptr || width == 0 || height == 0) {
    return real(dptr, pitch, width, height, elem);
  }
  const int ordinal = CurrentOrdinal();
  // The pitch is known only afterwards: charge the aligned estimate, then correct it.
  const uint64_t estimate = RoundUp(width, kPitchAlignment) * height;
  const int r = ChargedAllocation(
      ordinal, estimate, AllocKind::kDevicePointer,
      [&] { return real(dptr, pitch, width, height, elem); }, dptr);
  if (r == CUDA_SUCCESS && ordinal >= 0) {
    const uint64_t actual = static_cast<uint64_t>(*pitch) * height;
    if (actual != estimate) {
      AllocRecord record{};
      Allocations().Take(AllocKind::kDevicePointer, *dptr, &record);
      if (actual > estimate) {
        ChargeDevice(ordinal, actual - estimate);  // allocated already: cannot be refused now
      } else {
        Credit(ordinal, estimate - actual);
      }
      Allocations().Insert(AllocKind::kDevicePointer, *dptr, AllocRecord{actual, ordinal});
    }
  }
  return r;
}

GPUFRAC_EXPORT int cuMemFree_v2(CUdeviceptr dptr) {
  auto real = REAL(cuMemFree_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(dptr);
  if (r == CUDA_SUCCESS && Enforcing() && dptr != 0) {
    AllocRecord record{};
    if (Allocations().Take(AllocKind::kDevicePointer, dptr, &record)) {
      Credit(record.ordinal, record.bytes);
    } else {
      // Not ours: perhaps stream-ordered memory freed synchronously; its pool may have shrunk.
      __atomic_store_n(&g_pools_may_shrink, true, __ATOMIC_RELEASE);
      ReconcileAllPools();
    }
  }
  return r;
}

GPUFRAC_EXPORT int cuMemAllocAsync(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  return AllocAsync(REAL(cuMemAllocAsync), dptr, bytes, stream);
}
GPUFRAC_EXPORT int cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  return AllocAsync(REAL(cuMemAllocAsync_ptsz), dptr, bytes, stream);
}
GPUFRAC_EXPORT int cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                                           CUstream stream) {
  return AllocFromPool(REAL(cuMemAllocFromPoolAsync), dptr, bytes, pool, stream);
}
GPUFRAC_EXPORT int cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                                                CUstream stream) {
  return AllocFromPool(REAL(cuMemAllocFromPoolAsync_ptsz), dptr, bytes, pool, stream);
}
GPUFRAC_EXPORT int cuMemFreeAsync(CUdeviceptr dptr, CUstream stream) {
  return FreeAsync(REAL(cuMemFreeAsync), dptr, stream);
}
GPUFRAC_EXPORT int cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream stream) {
  return FreeAsync(REAL(cuMemFreeAsync_ptsz), dptr, stream);
}

GPUFRAC_EXPORT int cuMemPoolTrimTo(CUmemoryPool pool, size_t keep) {
  auto real = REAL(cuMemPoolTrimTo);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(pool, keep);
  if (r == CUDA_SUCCESS && Enforcing()) {
    __atomic_store_n(&g_pools_may_shrink, true, __ATOMIC_RELEASE);
    ReconcileAllPools();
  }
  return r;
}

GPUFRAC_EXPORT int cuCtxSynchronize() {
  auto real = REAL(cuCtxSynchronize);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real();
  ReconcileAllPools();
  return r;
}
GPUFRAC_EXPORT int cuStreamSynchronize(CUstream stream) {
  auto real = REAL(cuStreamSynchronize);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(stream);
  ReconcileAllPools();
  return r;
}
GPUFRAC_EXPORT int cuStreamSynchronize_ptsz(CUstream stream) {
  auto real = REAL(cuStreamSynchronize_ptsz);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(stream);
  ReconcileAllPools();
  return r;
}

// Virtual memory management: physical memory is charged when created, on the device its
// location names (no current context needed), and credited when released. Mapping is free.
GPUFRAC_EXPORT int cuMemCreate(CUmemGenericAllocationHandle* handle, size_t bytes,
                               const CUmemAllocationProp* prop, unsigned long long flags) {
  auto real = REAL(cuMemCreate);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || handle == nullptr || prop == nullptr || bytes == 0 ||
      prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return real(handle, bytes, prop, flags);
  }
  return ChargedAllocation(
      prop->location.id, bytes, AllocKind::kVmmHandle,
      [&] { return real(handle, bytes, prop, flags); }, handle);
}

GPUFRAC_EXPORT int cuMemRelease(CUmemGenericAllocationHandle handle) {
  auto real = REAL(cuMemRelease);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(handle);
  if (r == CUDA_SUCCESS && Enforcing()) CreditRecorded(AllocKind::kVmmHandle, handle);
  return r;
}

// Arrays: charged by the size the descriptor implies.
GPUFRAC_EXPORT int cuArrayCreate_v2(CUarray* array, const CUDA_ARRAY_DESCRIPTOR* d) {
  auto real = REAL(cuArrayCreate_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || array == nullptr || d == nullptr) return real(array, d);
  return ChargedAllocation(
      CurrentOrdinal(), ArrayBytes(d->Width, d->Height, 0, d->Format, d->NumChannels),
      AllocKind::kArray, [&] { return real(array, d); }, array);
}

GPUFRAC_EXPORT int cuArray3DCreate_v2(CUarray* array, const CUDA_ARRAY3D_DESCRIPTOR* d) {
  auto real = REAL(cuArray3DCreate_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || array == nullptr || d == nullptr) return real(array, d);
  return ChargedAllocation(
      CurrentOrdinal(), ArrayBytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels),
      AllocKind::kArray, [&] { return real(array, d); }, array);
}

GPUFRAC_EXPORT int cuArrayDestroy(CUarray array) {
  auto real = REAL(cuArrayDestroy);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(array);
  if (r == CUDA_SUCCESS && Enforcing()) {
    CreditRecorded(AllocKind::kArray, reinterpret_cast<uint64_t>(array));
  }
  return r;
}

GPUFRAC_EXPORT int cuMipmappedArrayCreate(CUmipmappedArray* array, const CUDA_ARRAY3D_DESCRIPTOR* d,
                                          unsigned int levels) {
  auto real = REAL(cuMipmappedArrayCreate);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || array == nullptr || d == nullptr) return real(array, d, levels);
  return ChargedAllocation(
      CurrentOrdinal(), MipmappedArrayBytes(*d, levels), AllocKind::kMipmappedArray,
      [&] { return real(array, d, levels); }, array);
}

GPUFRAC_EXPORT int cuMipmappedArrayDestroy(CUmipmappedArray array) {
  auto real = REAL(cuMipmappedArrayDestroy);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(array);
  if (r == CUDA_SUCCESS && Enforcing()) {
    CreditRecorded(AllocKind::kMipmappedArray, reinterpret_cast<uint64_t>(array));
  }
  return r;
}
