// Pools destroyed while memory allocated from them is still outstanding. The driver keeps such a
// pool's memory past cuMemPoolDestroy and releases all of it once the last allocation is freed
// (the call's documented rule); gpufrac keeps charging it until then, and credits it then, never
// earlier: crediting early would let a tenant escape its limit.
#pragma once

#include <cstdint>

#include "runtime/cuda_abi.h"

namespace gpufrac::runtime {

// Starts draining `pool`, just destroyed: `charged` bytes stay charged on `ordinal` until frees
// of `in_use` bytes (its USED_MEM_CURRENT at destruction) are seen. False when too many pools
// drain at once; the charge then stays until the process exits.
bool StartDraining(CUmemoryPool pool, int ordinal, uint64_t charged, uint64_t in_use);

// The driver has handed `pool` out again, for a new pool: a draining pool that had the value is
// gone, and its charge is credited.
void ForgetDrainingHandle(CUmemoryPool pool);

// What a free takes from a draining pool, asked of the driver before the free (a freed
// pointer's attributes are undefined). serial 0: the pointer is not from a draining pool.
struct DrainingFree {
  uint64_t serial = 0;
  uint64_t bytes = 0;
};
// One relaxed load while nothing drains, the common case.
DrainingFree DrainingFreeOf(CUdeviceptr dptr);
// Whether work queued on `stream` is being captured into a graph: a free captured there runs
// when (and each time) the graph is launched, perhaps never, so it must not count as a free.
bool StreamCapturing(CUstream stream);
// After the driver accepted the free: once nothing is outstanding, the pool is released, to be
// credited by a later CreditReleasedPools. A free queued on a stream (`stream_ordered`:
// cuMemFreeAsync, with `per_thread` for its _ptsz form) happens only when the stream gets to it,
// so the pool is credited once an event recorded behind the free has completed, never before.
void NoteDrainingFree(const DrainingFree& freed, bool stream_ordered = false,
                      CUstream stream = nullptr, bool per_thread = false);

// Credits the draining pools that are released. Called where freed pool memory is credited:
// synchronizations, trims, synchronous frees. True while a released pool still waits for its
// stream, so that the caller looks again at its next synchronization.
bool CreditReleasedPools();

// After fork, in the child: it holds none of its parent's pools.
void ResetDrainingAfterFork();

}  // namespace gpufrac::runtime
