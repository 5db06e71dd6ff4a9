// Stream-ordered memory pools: charged by how much a pool's reservation grows, on the device the
// pool's memory lives on, and credited as the reservation shrinks (at synchronizations, trims and
// the pool's destruction). Each pool this process uses has one entry in a small table; a pool
// destroyed with memory still allocated from it moves to pool_drain.h's.
#include <pthread.h>

#include <cstdint>

#include "runtime/interposer.h"
#include "runtime/pool_drain.h"

namespace gpufrac::runtime {
namespace {

constexpr uint64_t kPoolGranule = 2ull << 20;
// Live pools at once; an entry is freed when its pool is destroyed.
constexpr int kMaxPools = 256;
constexpr int kHostPool = -1;  // memory on the host: not charged

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

bool Enforcing() { return GetConfig().managed; }

struct PoolCharge {
  CUmemoryPool pool;
  int ordinal;       // the device its memory lives on, or kHostPool
  uint64_t charged;  // what this process has charged for the pool's reservation
};
PoolCharge g_pools[kMaxPools];
int g_pool_count = 0;
bool g_pools_may_shrink = false;
pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;

using PoolAttrFn = int (*)(CUmemoryPool, CUmemPool_attribute, void*);
using DeviceGetPoolFn = int (*)(CUmemoryPool*, CUdevice);
using DeviceCountFn = int (*)(int*);

uint64_t PoolAttribute(CUmemoryPool pool, CUmemPool_attribute attribute) {
  static PoolAttrFn cached = nullptr;
  PoolAttrFn get_attr = RealDriverFunction(&cached, "cuMemPoolGetAttribute");
  cuuint64_t value = 0;
  if (get_attr == nullptr || get_attr(pool, attribute, &value) != CUDA_SUCCESS) return 0;
  return value;
}

uint64_t PoolReserved(CUmemoryPool pool) {
  return PoolAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT);
}

// A device's pool as the driver names it: `current` the one cuMemAllocAsync uses, else its
// default pool. Null if the driver has none.
CUmemoryPool DevicePool(int ordinal, bool current) {
  static DeviceGetPoolFn current_fn = nullptr, default_fn = nullptr;
  DeviceGetPoolFn get_current = RealDriverFunction(&current_fn, "cuDeviceGetMemPool");
  DeviceGetPoolFn get_default = RealDriverFunction(&default_fn, "cuDeviceGetDefaultMemPool");
  DeviceGetPoolFn get = current && get_current != nullptr ? get_current : get_default;
  CUmemoryPool pool = nullptr;
  if (get == nullptr || get(&pool, ordinal) != CUDA_SUCCESS) return nullptr;
  return pool;
}

// The device of a pool not made by cuMemPoolCreate (a device's default pool), or -1.
int DeviceOfUncreatedPool(CUmemoryPool pool) {
  static DeviceCountFn cached = nullptr;
  DeviceCountFn get_count = RealDriverFunction(&cached, "cuDeviceGetCount");
  int count = 0;
  if (get_count == nullptr || get_count(&count) != CUDA_SUCCESS) return -1;
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    if (DevicePool(ordinal, false) == pool || DevicePool(ordinal, true) == pool) return ordinal;
  }
  return -1;
}

PoolCharge* FindPool(CUmemoryPool pool) {  // g_pool_mu held
  for (int i = 0; i < g_pool_count; ++i) {
    if (g_pools[i].pool == pool) return &g_pools[i];
  }
  return nullptr;
}

PoolCharge* TrackPool(CUmemoryPool pool, int ordinal) {  // g_pool_mu held
  if (PoolCharge* known = FindPool(pool); known != nullptr) return known;
  if (g_pool_count == kMaxPools) return nullptr;
  g_pools[g_pool_count] = PoolCharge{pool, ordinal, 0};
  return &g_pools[g_pool_count++];
}

void ForgetPool(PoolCharge* p) {  // g_pool_mu held
  *p = g_pools[--g_pool_count];
}

// Brings a pool's charge in line with its real reservation. g_pool_mu held.
void Reconcile(PoolCharge& p) {
  if (p.ordinal == kHostPool) return;
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
  // A destroyed pool whose stream has not yet run its last free is looked at again next time.
  g_pools_may_shrink = CreditReleasedPools();
  pthread_mutex_unlock(&g_pool_mu);
}

// Allocates from `pool` through `allocate`, charging the pool's growth to the pool's device.
// `fallback_ordinal` is used for a pool gpufrac cannot place (none is known to exist).
template <typename Allocate>
int PoolAllocation(CUmemoryPool pool, int fallback_ordinal, uint64_t bytes, Allocate allocate) {
  pthread_mutex_lock(&g_pool_mu);
  PoolCharge* p = FindPool(pool);
  const bool untracked = p == nullptr;
  if (untracked) {
    const int ordinal = DeviceOfUncreatedPool(pool);
    if (ordinal < 0) Log(LogLevel::kDebug, "a pool of unknown device: charged to the current one");
    // A device's pool, new to gpufrac: if a destroyed pool had its handle, that one is gone. (An
    // unknown pool may be a destroyed one the program still uses, which settles nothing.)
    if (ordinal >= 0) ForgetDrainingHandle(pool);
    p = TrackPool(pool, ordinal >= 0 ? ordinal : fallback_ordinal);
  }
  if (p == nullptr) {
    pthread_mutex_unlock(&g_pool_mu);
    Log(LogLevel::kError, "more than %d memory pools: refusing to allocate untracked", kMaxPools);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  if (p->ordinal == kHostPool) {
    pthread_mutex_unlock(&g_pool_mu);
    return allocate();
  }
  Reconcile(*p);
  int r = CUDA_ERROR_OUT_OF_MEMORY;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The most the reservation can grow by: the request less what the pool has cached.
    const uint64_t used = PoolAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT);
    const uint64_t cached = p->charged > used ? p->charged - used : 0;
    const uint64_t growth = bytes > cached ? RoundUp(bytes - cached, kPoolGranule) : 0;
    const int refused = growth == 0 ? CUDA_SUCCESS : ChargeDevice(p->ordinal, growth);
    if (refused == CUDA_SUCCESS) {
      p->charged += growth;
      r = allocate();
      Reconcile(*p);  // the real growth replaces the estimate, whether or not it succeeded
      break;
    }
    r = refused;
    if (attempt == 0 && refused == CUDA_ERROR_OUT_OF_MEMORY) {
      // At the limit: give back what the pool caches unused, then try once more.
      auto trim = REAL(cuMemPoolTrimTo);
      if (trim == nullptr) break;
      trim(pool, 0);
      Reconcile(*p);
    } else {
      break;
    }
  }
  // A handle the driver refused (a destroyed pool's, say) leaves no entry behind to be mistaken
  // for a later pool that gets the same value.
  if (untracked && r != CUDA_SUCCESS && p->charged == 0) ForgetPool(p);
  pthread_mutex_unlock(&g_pool_mu);
  return r;
}

template <typename RealFn>
int AllocAsync(RealFn real, CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing()) return real(dptr, bytes, stream);
  const int ordinal = CurrentOrdinal();
  CUmemoryPool pool = ordinal >= 0 ? DevicePool(ordinal, true) : nullptr;
  if (pool == nullptr) return real(dptr, bytes, stream);
  return PoolAllocation(pool, ordinal, bytes, [&] { return real(dptr, bytes, stream); });
}

template <typename RealFn>
int AllocFromPool(RealFn real, CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                  CUstream stream) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || pool == nullptr) return real(dptr, bytes, pool, stream);
  const int ordinal = CurrentOrdinal();
  if (ordinal < 0) return real(dptr, bytes, pool, stream);  // no context: the driver fails it
  return PoolAllocation(pool, ordinal, bytes, [&] { return real(dptr, bytes, pool, stream); });
}

template <typename RealFn>
int FreeAsync(RealFn real, CUdeviceptr dptr, CUstream stream, bool per_thread) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  DrainingFree draining = DrainingFreeOf(dptr);
  if (draining.serial != 0 && StreamCapturing(stream)) draining = {};
  const int r = real(dptr, stream);
  // Pool memory returns to the pool, not the card, until a synchronization or trim releases it.
  // A destroyed pool's is released, all of it, once the stream has run its last free: it is
  // credited at the first synchronization or trim that finds the stream past it.
  if (r == CUDA_SUCCESS) {
    NoteDrainingFree(draining, true, stream, per_thread);
    __atomic_store_n(&g_pools_may_shrink, true, __ATOMIC_RELEASE);
  }
  return r;
}

// A synchronization, after which the frees it waited for have returned memory to their pools:
// the pools' charges follow their reservations.
template <typename RealFn, typename... Args>
int Synchronized(RealFn real, Args... args) {
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(args...);
  ReconcileAllPools();
  return r;
}

}  // namespace

void ReconcilePoolsAfterFree() {
  __atomic_store_n(&g_pools_may_shrink, true, __ATOMIC_RELEASE);
  ReconcileAllPools();
}

void ResetPoolsAfterFork() {
  g_pool_count = 0;
  g_pools_may_shrink = false;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_pool_mu = fresh;
  ResetDrainingAfterFork();
}

}  // namespace gpufrac::runtime

using namespace gpufrac;
using namespace gpufrac::runtime;

// The pool's device is known only here: allocations from it may come with any current context.
GPUFRAC_EXPORT int cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* props) {
  auto real = REAL(cuMemPoolCreate);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || pool == nullptr || props == nullptr) return real(pool, props);
  const int ordinal =
      props->location.type == CU_MEM_LOCATION_TYPE_DEVICE ? props->location.id : kHostPool;
  pthread_mutex_lock(&g_pool_mu);
  int r = CUDA_ERROR_OUT_OF_MEMORY;
  if (g_pool_count == kMaxPools) {
    Log(LogLevel::kError, "more than %d memory pools at once: cuMemPoolCreate refused", kMaxPools);
  } else {
    r = real(pool, props);
    if (r == CUDA_SUCCESS) {
      // A handle value the driver hands out again names a new pool: whatever gpufrac knew under
      // it (a draining pool, or an entry left by a destroyed pool's misuse) is gone.
      ForgetDrainingHandle(*pool);
      if (PoolCharge* stale = FindPool(*pool); stale != nullptr) {
        if (stale->ordinal != kHostPool && stale->charged > 0) {
          Credit(stale->ordinal, stale->charged);
        }
        ForgetPool(stale);
      }
      TrackPool(*pool, ordinal);
    }
  }
  pthread_mutex_unlock(&g_pool_mu);
  return r;
}

// A pool with nothing allocated from it is released at once. One with allocations outstanding
// keeps its memory until the last of them is freed, then releases all of it (the driver's rule):
// gpufrac charges what it holds until then (pool_drain.h) and credits the rest now.
GPUFRAC_EXPORT int cuMemPoolDestroy(CUmemoryPool pool) {
  auto real = REAL(cuMemPoolDestroy);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || pool == nullptr) return real(pool);
  pthread_mutex_lock(&g_pool_mu);
  PoolCharge* p = FindPool(pool);
  if (p == nullptr || p->ordinal == kHostPool) {
    const int r = real(pool);
    if (r == CUDA_SUCCESS && p != nullptr) ForgetPool(p);
    pthread_mutex_unlock(&g_pool_mu);
    return r;
  }
  // Read while the handle is valid. Trimmed first, the pool holds no more than its outstanding
  // allocations occupy, whether or not the driver would drop its cache at destruction; what it
  // reports is never below what they use, even if the query fails.
  const uint64_t in_use = PoolAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT);
  uint64_t kept = 0;
  if (in_use > 0) {
    if (auto trim = REAL(cuMemPoolTrimTo); trim != nullptr) trim(pool, 0);
    kept = PoolReserved(pool);
    if (kept < RoundUp(in_use, kPoolGranule)) kept = RoundUp(in_use, kPoolGranule);
  }
  const int r = real(pool);
  if (r != CUDA_SUCCESS) {
    Reconcile(*p);  // still alive, and perhaps trimmed
  } else {
    uint64_t charged = p->charged;
    if (kept < charged) {
      Credit(p->ordinal, charged - kept);
      charged = kept;
    } else if (kept > charged && ChargeDevice(p->ordinal, kept - charged) == CUDA_SUCCESS) {
      charged = kept;  // held already: charged after the fact if the limit allows
    }
    if (charged > 0 && !StartDraining(pool, p->ordinal, charged, in_use)) {
      Log(LogLevel::kWarn,
          "too many destroyed pools with memory outstanding: %llu bytes stay charged until the "
          "process exits",
          static_cast<unsigned long long>(charged));
    }
    ForgetPool(p);
  }
  pthread_mutex_unlock(&g_pool_mu);
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
  return FreeAsync(REAL(cuMemFreeAsync), dptr, stream, false);
}
GPUFRAC_EXPORT int cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream stream) {
  return FreeAsync(REAL(cuMemFreeAsync_ptsz), dptr, stream, true);
}

GPUFRAC_EXPORT int cuMemPoolTrimTo(CUmemoryPool pool, size_t keep) {
  auto real = REAL(cuMemPoolTrimTo);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(pool, keep);
  if (r == CUDA_SUCCESS && Enforcing()) ReconcilePoolsAfterFree();
  return r;
}

GPUFRAC_EXPORT int cuCtxSynchronize() { return Synchronized(REAL(cuCtxSynchronize)); }
GPUFRAC_EXPORT int cuStreamSynchronize(CUstream stream) {
  return Synchronized(REAL(cuStreamSynchronize), stream);
}
GPUFRAC_EXPORT int cuStreamSynchronize_ptsz(CUstream stream) {
  return Synchronized(REAL(cuStreamSynchronize_ptsz), stream);
}
