#include "runtime/inflight.h"

#include <pthread.h>

#include "runtime/interposer.h"

namespace gpufrac::runtime {
namespace {

constexpr int kMaxDevices = 64;
// Outstanding events at most, and launches between two events: at most about
// kMarks * kLaunchesPerMark + kLaunchesPerMark launches are queued behind the GPU.
constexpr int kMarks = 4;
constexpr unsigned kLaunchesPerMark = 1;

struct EventApi {
  int (*current_context)(CUcontext*);
  int (*create)(CUevent*, unsigned int);
  int (*destroy)(CUevent);
  int (*record)(CUevent, CUstream);
  int (*query)(CUevent);
  int (*synchronize)(CUevent);
};

EventApi g_api;
bool g_api_ready = false;
pthread_once_t g_api_once = PTHREAD_ONCE_INIT;

void ResolveApi() {
  g_api.current_context =
      reinterpret_cast<int (*)(CUcontext*)>(RealDriverSymbol("cuCtxGetCurrent"));
  g_api.create =
      reinterpret_cast<int (*)(CUevent*, unsigned int)>(RealDriverSymbol("cuEventCreate"));
  g_api.destroy = reinterpret_cast<int (*)(CUevent)>(RealDriverSymbol("cuEventDestroy_v2"));
  g_api.record = reinterpret_cast<int (*)(CUevent, CUstream)>(RealDriverSymbol("cuEventRecord"));
  g_api.query = reinterpret_cast<int (*)(CUevent)>(RealDriverSymbol("cuEventQuery"));
  g_api.synchronize = reinterpret_cast<int (*)(CUevent)>(RealDriverSymbol("cuEventSynchronize"));
  g_api_ready = g_api.current_context && g_api.create && g_api.destroy && g_api.record &&
                g_api.query && g_api.synchronize;
}

// Per device, per process. Static storage, zero-initialized: an all-zero pthread mutex is an
// unlocked default mutex in glibc, so no constructor runs at load.
struct Marks {
  pthread_mutex_t mu;
  CUcontext context;       // the context the events were created in
  CUevent events[kMarks];  // a ring, created on first use
  int oldest;
  int outstanding;
  unsigned launches;  // since the last event
};
Marks g_marks[kMaxDevices];

void DropOldest(Marks& m) {
  m.oldest = (m.oldest + 1) % kMarks;
  --m.outstanding;
}

// Events belong to a context: a process that switches contexts on a device starts a new ring.
bool UseContext(Marks& m) {
  CUcontext current = nullptr;
  if (g_api.current_context(&current) != CUDA_SUCCESS || current == nullptr) return false;
  if (current == m.context) return true;
  for (CUevent& e : m.events) {
    if (e != nullptr) g_api.destroy(e);
    e = nullptr;
  }
  m.context = current;
  m.oldest = m.outstanding = 0;
  m.launches = 0;
  return true;
}

}  // namespace

void BoundInflight(int ordinal, CUstream stream) {
  if (ordinal < 0 || ordinal >= kMaxDevices || CaptureActive()) return;
  pthread_once(&g_api_once, ResolveApi);
  if (!g_api_ready) return;
  Marks& m = g_marks[ordinal];
  pthread_mutex_lock(&m.mu);
  if (UseContext(m) && ++m.launches >= kLaunchesPerMark) {
    m.launches = 0;
    while (m.outstanding > 0 && g_api.query(m.events[m.oldest]) != CUDA_ERROR_NOT_READY) {
      DropOldest(m);
    }
    if (m.outstanding == kMarks) {  // the GPU is behind by kMarks events: let it catch up
      g_api.synchronize(m.events[m.oldest]);
      DropOldest(m);
    }
    const int slot = (m.oldest + m.outstanding) % kMarks;
    CUevent& event = m.events[slot];
    if (event != nullptr || g_api.create(&event, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS) {
      if (g_api.record(event, stream) == CUDA_SUCCESS) ++m.outstanding;
    }
  }
  pthread_mutex_unlock(&m.mu);
}

void ResetInflightAfterFork() {
  for (Marks& m : g_marks) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    m.mu = fresh;
    m.context = nullptr;
    for (CUevent& e : m.events) e = nullptr;  // the parent's: not ours to destroy
    m.oldest = m.outstanding = 0;
    m.launches = 0;
  }
}

}  // namespace gpufrac::runtime
