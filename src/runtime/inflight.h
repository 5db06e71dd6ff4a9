// Keeps the work a process has queued on a GPU short while other tenants are busy on it.
//
// A lease (compute_gate.h) decides who may submit, but a CUDA launch only queues work: a tenant
// alone on the GPU can run hundreds of kernels ahead of the GPU, and when another tenant takes the
// lease, that backlog still runs first. An inference tenant would wait for a batch tenant's queue
// on every burst. So a tenant whose queue could delay a latency-sensitive neighbour (the compute
// gate decides who) records an event on the launch's stream at each launch and, once a couple of
// events are outstanding, waits for the oldest before queuing more. That bounds the work it has in
// flight to a few launches, measured by the GPU itself, without knowing how long kernels take.
// Skipped while a stream capture is open (an event recorded then would become part of the graph).
#pragma once

#include "runtime/cuda_abi.h"

namespace gpufrac::runtime {

// Called by a lease holder before it launches onto `stream` of device `ordinal`.
void BoundInflight(int ordinal, CUstream stream);

// After fork: the parent's events are not the child's.
void ResetInflightAfterFork();

}  // namespace gpufrac::runtime
