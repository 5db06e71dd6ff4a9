// Draining pools: a small table searched under its own lock, touched by frees only while it is
// not empty. Lock order: pool_hooks.cc's pool lock, then this one.
//
// Which pool a freed pointer came from is asked of the driver (CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE
// names a destroyed pool's handle for its outstanding allocations), and so is its size. What is
// assumed of the real driver, and what happens if it is wrong:
// - The size the pointer queries report adds up to what USED_MEM_CURRENT counted. If the queries
//   report more (a rounded size, or the pool's whole segment), a pool would be credited before its
//   last free; so the smaller of the two reports is taken, and a pool counts as released when its
//   outstanding bytes reach zero or below. If they report less, it stays charged until exit.
// - A handle value comes back from cuMemPoolCreate only after the pool it named was released, so
//   a reused value settles the old pool (ForgetDrainingHandle) instead of being confused with it.
// A cuMemFreeAsync returns before the stream runs it: the driver releases the pool only then, so
// an event is recorded behind the last free and the pool is credited once it has completed (if
// no event can be recorded, the stream is synchronized instead). A free queued during a stream
// capture is not counted at all: the pool stays charged.
#include "runtime/pool_drain.h"

#include <pthread.h>

#include "runtime/interposer.h"

namespace gpufrac::runtime {
namespace {

constexpr int kMaxDraining = 64;

struct Draining {
  uint64_t serial;  // never 0: tells a settled entry from a later one with the same handle
  CUmemoryPool pool;
  int ordinal;
  uint64_t charged;  // what gpufrac charges for the pool's memory
  uint64_t in_use;   // outstanding bytes not yet seen freed
  bool released;     // nothing outstanding: credited at the next CreditReleasedPools
  bool marking;      // ... once its last free's stream has an event recorded (being done)
  CUevent reached;   // completes when the stream has run the last free (null: it has)
};
Draining g_draining[kMaxDraining];
// Written under g_drain_mu, with atomic stores: read without it, g_unreleased on every free.
int g_count = 0;
int g_unreleased = 0;
uint64_t g_next_serial = 1;
pthread_mutex_t g_drain_mu = PTHREAD_MUTEX_INITIALIZER;

using PointerAttrFn = int (*)(void*, CUpointer_attribute, CUdeviceptr);
using StreamFn = int (*)(CUstream);
using EventCreateFn = int (*)(CUevent*, unsigned int);
using EventFn = int (*)(CUevent);
using EventRecordFn = int (*)(CUevent, CUstream);
using CapturingFn = int (*)(CUstream, int*);  // the status is CUstreamCaptureStatus, an int enum
using AddressRangeFn = int (*)(CUdeviceptr*, size_t*, CUdeviceptr);

constexpr int kCaptureStatusNone = 0;  // CU_STREAM_CAPTURE_STATUS_NONE

constexpr unsigned kEventDisableTiming = 0x2;  // CU_EVENT_DISABLE_TIMING: cheaper, no timestamps

PointerAttrFn PointerAttribute() {
  static PointerAttrFn get = nullptr;
  return RealDriverFunction(&get, "cuPointerGetAttribute");
}

// The allocation's size as the driver reports it: the smaller of its two answers, 0 if neither.
uint64_t AllocationBytes(CUdeviceptr dptr) {
  static AddressRangeFn range_fn = nullptr;
  AddressRangeFn range = RealDriverFunction(&range_fn, "cuMemGetAddressRange_v2");
  uint64_t bytes = 0;
  size_t size = 0;
  if (PointerAttribute() != nullptr &&
      PointerAttribute()(&size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, dptr) == CUDA_SUCCESS) {
    bytes = size;
  }
  CUdeviceptr base = 0;
  if (range != nullptr && range(&base, &size, dptr) == CUDA_SUCCESS &&
      (bytes == 0 || size < bytes)) {
    bytes = size;
  }
  return bytes;
}

void SetUnreleased(int value) {  // g_drain_mu held
  __atomic_store_n(&g_unreleased, value, __ATOMIC_RELAXED);
}

void DestroyEvent(CUevent event) {
  static EventFn destroy = nullptr;
  if (event != nullptr && RealDriverFunction(&destroy, "cuEventDestroy_v2") != nullptr)
    destroy(event);
}

// An event that completes once `stream` has run what was queued on it so far; null when none
// could be recorded, after synchronizing the stream instead (so that the free has run).
CUevent MarkStream(CUstream stream, bool per_thread) {
  static EventCreateFn create = nullptr;
  static EventRecordFn record = nullptr, record_ptsz = nullptr;
  static StreamFn synchronize = nullptr, synchronize_ptsz = nullptr;
  EventRecordFn record_fn = per_thread ? RealDriverFunction(&record_ptsz, "cuEventRecord_ptsz")
                                       : RealDriverFunction(&record, "cuEventRecord");
  CUevent event = nullptr;
  if (RealDriverFunction(&create, "cuEventCreate") != nullptr && record_fn != nullptr &&
      create(&event, kEventDisableTiming) == CUDA_SUCCESS) {
    if (record_fn(event, stream) == CUDA_SUCCESS) return event;
    DestroyEvent(event);
  }
  StreamFn sync = per_thread ? RealDriverFunction(&synchronize_ptsz, "cuStreamSynchronize_ptsz")
                             : RealDriverFunction(&synchronize, "cuStreamSynchronize");
  if (sync != nullptr) sync(stream);
  return nullptr;
}

void Remove(int index) {  // g_drain_mu held
  g_draining[index] = g_draining[g_count - 1];
  __atomic_store_n(&g_count, g_count - 1, __ATOMIC_RELAXED);
}

}  // namespace

bool StartDraining(CUmemoryPool pool, int ordinal, uint64_t charged, uint64_t in_use) {
  pthread_mutex_lock(&g_drain_mu);
  const bool room = g_count < kMaxDraining;
  if (room) {
    g_draining[g_count] =
        Draining{g_next_serial++, pool, ordinal, charged, in_use, false, false, nullptr};
    __atomic_store_n(&g_count, g_count + 1, __ATOMIC_RELAXED);
    SetUnreleased(g_unreleased + 1);
  }
  pthread_mutex_unlock(&g_drain_mu);
  return room;
}

void ForgetDrainingHandle(CUmemoryPool pool) {
  if (__atomic_load_n(&g_count, __ATOMIC_RELAXED) == 0) return;
  pthread_mutex_lock(&g_drain_mu);
  for (int i = 0; i < g_count; ++i) {
    if (g_draining[i].pool != pool) continue;
    Log(LogLevel::kDebug, "a destroyed pool's handle was reused: its %llu bytes are released",
        static_cast<unsigned long long>(g_draining[i].charged));
    Credit(g_draining[i].ordinal, g_draining[i].charged);
    if (!g_draining[i].released) SetUnreleased(g_unreleased - 1);
    DestroyEvent(g_draining[i].reached);
    Remove(i--);
  }
  pthread_mutex_unlock(&g_drain_mu);
}

DrainingFree DrainingFreeOf(CUdeviceptr dptr) {
  if (__atomic_load_n(&g_unreleased, __ATOMIC_RELAXED) == 0 || dptr == 0) return {};
  CUmemoryPool owner = nullptr;
  if (PointerAttribute() == nullptr ||
      PointerAttribute()(&owner, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, dptr) != CUDA_SUCCESS ||
      owner == nullptr) {
    return {};
  }
  uint64_t serial = 0;
  pthread_mutex_lock(&g_drain_mu);
  for (int i = 0; i < g_count && serial == 0; ++i) {
    if (g_draining[i].pool == owner && !g_draining[i].released) serial = g_draining[i].serial;
  }
  pthread_mutex_unlock(&g_drain_mu);
  if (serial == 0) return {};
  return DrainingFree{serial, AllocationBytes(dptr)};
}

bool StreamCapturing(CUstream stream) {
  if (!CaptureActive()) return false;  // no capture open in the process (capture_hooks.cc)
  static CapturingFn is_capturing = nullptr;
  if (RealDriverFunction(&is_capturing, "cuStreamIsCapturing") == nullptr)
    return true;  // cannot tell: yes
  int status = kCaptureStatusNone;
  if (is_capturing(stream, &status) != CUDA_SUCCESS) return true;
  return status != kCaptureStatusNone;
}

void NoteDrainingFree(const DrainingFree& freed, bool stream_ordered, CUstream stream,
                      bool per_thread) {
  if (freed.serial == 0) return;
  bool emptied = false;
  pthread_mutex_lock(&g_drain_mu);
  for (int i = 0; i < g_count; ++i) {
    Draining& d = g_draining[i];
    if (d.serial != freed.serial || d.released) continue;
    d.in_use = freed.bytes >= d.in_use ? 0 : d.in_use - freed.bytes;
    if (d.in_use == 0) {
      d.released = true;
      d.marking = stream_ordered;  // not credited before its event is in place
      SetUnreleased(g_unreleased - 1);
      emptied = true;
    }
    break;
  }
  pthread_mutex_unlock(&g_drain_mu);
  if (!emptied || !stream_ordered) return;
  // Outside the lock: recording may synchronize the stream.
  CUevent reached = MarkStream(stream, per_thread);
  pthread_mutex_lock(&g_drain_mu);
  bool placed = false;
  for (int i = 0; i < g_count && !placed; ++i) {
    if (g_draining[i].serial != freed.serial) continue;
    g_draining[i].reached = reached;
    g_draining[i].marking = false;
    placed = true;
  }
  pthread_mutex_unlock(&g_drain_mu);
  if (!placed) DestroyEvent(reached);  // settled meanwhile (its handle was reused)
}

bool CreditReleasedPools() {
  if (__atomic_load_n(&g_count, __ATOMIC_RELAXED) == 0) return false;
  static EventFn query = nullptr;
  bool waiting = false;
  pthread_mutex_lock(&g_drain_mu);
  for (int i = 0; i < g_count; ++i) {
    Draining& d = g_draining[i];
    if (!d.released) continue;
    if (d.marking ||
        (d.reached != nullptr && RealDriverFunction(&query, "cuEventQuery") != nullptr &&
         query(d.reached) == CUDA_ERROR_NOT_READY)) {
      waiting = true;  // the stream has not run the last free yet: the driver still holds it
      continue;
    }
    DestroyEvent(d.reached);
    Credit(d.ordinal, d.charged);
    Remove(i--);
  }
  pthread_mutex_unlock(&g_drain_mu);
  return waiting;
}

void ResetDrainingAfterFork() {
  g_count = 0;
  g_unreleased = 0;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_drain_mu = fresh;
}

}  // namespace gpufrac::runtime
