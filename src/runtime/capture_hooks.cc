// Stream capture bookkeeping. The compute gate synchronizes a process's work when its lease
// passes to another tenant, to measure how long that work ran on; a synchronize during a capture
// (global or thread-local mode) would invalidate the graph being captured, so the gate skips it
// while any capture in the process is open.
#include "runtime/interposer.h"

namespace gpufrac::runtime {
namespace {

int g_open_captures = 0;  // atomic builtins: the hooks run on any thread

int Began(int result) {
  if (result == CUDA_SUCCESS) __atomic_add_fetch(&g_open_captures, 1, __ATOMIC_RELAXED);
  return result;
}

int Ended(int result) {
  // These results end the capture; the others (not capturing, wrong thread) leave it as it was.
  const bool ended = result == CUDA_SUCCESS || result == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ||
                     result == CUDA_ERROR_STREAM_CAPTURE_UNJOINED;
  if (ended && __atomic_load_n(&g_open_captures, __ATOMIC_RELAXED) > 0) {
    __atomic_sub_fetch(&g_open_captures, 1, __ATOMIC_RELAXED);
  }
  return result;
}

}  // namespace

bool CaptureActive() { return __atomic_load_n(&g_open_captures, __ATOMIC_RELAXED) > 0; }

void ResetCapturesAfterFork() { __atomic_store_n(&g_open_captures, 0, __ATOMIC_RELAXED); }

}  // namespace gpufrac::runtime

using namespace gpufrac::runtime;

// Each hook forwards to the driver and passes the result through Began or Ended.
#define GPUFRAC_CAPTURE_HOOK(symbol, params, args, bookkeeping)             \
  GPUFRAC_EXPORT int symbol params {                                        \
    auto real = REAL(symbol);                                               \
    return real != nullptr ? bookkeeping(real args) : CUDA_ERROR_NOT_FOUND; \
  }

GPUFRAC_CAPTURE_HOOK(cuStreamBeginCapture, (CUstream stream, int mode), (stream, mode), Began)
GPUFRAC_CAPTURE_HOOK(cuStreamBeginCapture_ptsz, (CUstream stream, int mode), (stream, mode), Began)
GPUFRAC_CAPTURE_HOOK(cuStreamBeginCapture_v2, (CUstream stream, int mode), (stream, mode), Began)
GPUFRAC_CAPTURE_HOOK(cuStreamBeginCapture_v2_ptsz, (CUstream stream, int mode), (stream, mode),
                     Began)
GPUFRAC_CAPTURE_HOOK(cuStreamBeginCaptureToGraph,
                     (CUstream stream, CUgraph graph, const void* dependencies,
                      const void* edge_data, size_t count, int mode),
                     (stream, graph, dependencies, edge_data, count, mode), Began)
GPUFRAC_CAPTURE_HOOK(cuStreamBeginCaptureToGraph_ptsz,
                     (CUstream stream, CUgraph graph, const void* dependencies,
                      const void* edge_data, size_t count, int mode),
                     (stream, graph, dependencies, edge_data, count, mode), Began)
GPUFRAC_CAPTURE_HOOK(cuStreamEndCapture, (CUstream stream, CUgraph* graph), (stream, graph), Ended)
GPUFRAC_CAPTURE_HOOK(cuStreamEndCapture_ptsz, (CUstream stream, CUgraph* graph), (stream, graph),
                     Ended)
