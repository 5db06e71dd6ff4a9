// Compute sharing: time-slice leases over each GPU, decided by weighted stride scheduling.
//
// One tenant at a time holds a GPU's lease (ComputeState in the ledger's usage object) for a
// slice (GPUFRAC_COMPUTE_SLICE_MS, default 10 ms); only its processes may put work on that GPU
// meanwhile. When the lease ends, or its holder goes idle, or an inference tenant arrives while a
// batch tenant holds it, whichever waiting process gets there first decides the next holder:
//
//   - among tenants launching now (a thread at the gate, or a launch within the holder-idle
//     time), the one with the least GPU time per unit of weight (its compute request) goes next,
//     so busy tenants share in proportion to their requests and idle share goes to whoever is
//     busy (fair mode);
//   - a tenant waking from idle starts level with the busy ones: no credit is banked while idle;
//   - inference goes before batch, unless the batch tenant has fallen behind its guaranteed share
//     by more than a slice: batch never starves below its request;
//   - a tenant with a compute limit below 1 (strict mode: limit = request) sits out after each
//     slice long enough to keep its share at the limit, even on an idle GPU;
//   - a tenant spread over several GPUs that holds a lease on another of them now goes next if
//     it is no more than two slices ahead of the pick, and its lease ends with that other one
//     (gang.h); while it waits it may take the lease early, as inference does from batch.
//
// A lease is charged by the time it covered, but work queued under it runs on after it ends, into
// the next holder's slice; a tenant launching large units (CUDA graphs) would gain by that. So a
// process that finds its tenant's lease gone synchronizes its work once (unless a stream capture
// is open), and the time its work ran past the handover is charged to its tenant and credited to
// the lease that followed. Stride scheduling then evens out the GPU time actually used.
//
// Waiting threads sleep on a futex in shared memory, woken at every decision. The launch path of
// the lease holder costs one clock read and three atomic loads.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/ledger.h"

namespace gpufrac::runtime {

struct GateSettings {
  uint64_t slice_ns;
  uint64_t idle_ns;          // a tenant silent this long is not busy
  uint64_t holder_idle_ns;   // a lease holder silent this long may be replaced early
  uint64_t starve_slack_ns;  // how far (in GPU time) batch may fall behind before it goes first
  bool align_gangs = true;   // line up the leases of tenants spread over several GPUs (gang.h)
};

// Decides the next lease of `ledger`'s GPU at time `now_ns`. Exposed for unit tests; in the
// runtime, callers hold the GPU's decider lock.
void DecideLease(Ledger& ledger, uint64_t now_ns, const GateSettings& settings);

// How a process measures the tail of its work after losing a lease.
struct LeaseDrain {
  std::atomic<uint64_t>* held_lease;  // the lease this process last launched under
  bool (*synchronize)();              // waits for the process's work; false if it could not
};

// Blocks until tenant `tenant` holds the lease of `ledger`'s GPU, deciding when it may. With
// `drain`, the calling process's work left running after its tenant's lease is charged to it.
void WaitForLease(Ledger& ledger, int tenant, const GateSettings& settings,
                  const LeaseDrain* drain = nullptr);

uint64_t MonotonicNs();

// Lease word packing: (end_ns << 8) | (holder + 1).
inline int LeaseHolder(uint64_t lease) { return static_cast<int>(lease & 0xff) - 1; }
inline uint64_t LeaseEnd(uint64_t lease) { return lease >> 8; }
inline uint64_t PackLease(int holder, uint64_t end_ns) {
  return (end_ns << 8) | static_cast<uint64_t>(holder + 1);
}

}  // namespace gpufrac::runtime
