// GPU time on the simulated devices. Each device has one timeline shared by all processes; every
// kernel occupies it for GPUFRAC_SIM_KERNEL_US microseconds (read per process, default 50), one
// kernel at a time in submission order, as contexts time-slice on a real GPU. Launches return at
// once unless the process already has QueueDepth() kernels' worth of work waiting (a real launch
// queue is finite too, though far deeper: GPUFRAC_SIM_QUEUE_DEPTH, default 8, sets it);
// synchronizations wait until the process's own submitted work has run.
#pragma once

#include <cstdint>

namespace gpufrac::sim {

constexpr int kDefaultQueueDepth = 8;

uint64_t NowNs();
uint64_t KernelNs();
// How many kernels' worth of work a process may have waiting before a launch blocks.
uint64_t QueueDepth();
// Puts `kernels` kernels of this process on device `ordinal`'s timeline.
void Enqueue(int ordinal, uint64_t kernels);
// When this process's last submitted kernel on `ordinal` finishes (0: nothing submitted).
uint64_t LastFinishNs(int ordinal);
// Sleeps until the monotonic clock reaches `deadline_ns`.
void SleepUntil(uint64_t deadline_ns);
// Waits for this process's work on one device, or on all devices.
void WaitIdle(int ordinal);
void WaitAllIdle();

}  // namespace gpufrac::sim
