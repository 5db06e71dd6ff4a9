#include "sim/sim_timeline.h"

#include <time.h>

#include <atomic>
#include <cstdlib>

#include "sim/sim_process.h"

namespace gpufrac::sim {
namespace {

constexpr uint64_t kDefaultKernelUs = 50;
std::atomic<uint64_t> g_last_finish[kMaxSimDevices];

}  // namespace

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t KernelNs() {
  static const uint64_t ns = [] {
    const char* v = getenv("GPUFRAC_SIM_KERNEL_US");
    const long long us = v != nullptr ? atoll(v) : 0;
    return static_cast<uint64_t>(us > 0 ? us : kDefaultKernelUs) * 1000;
  }();
  return ns;
}

uint64_t QueueDepth() {
  static const uint64_t depth = [] {
    const char* v = getenv("GPUFRAC_SIM_QUEUE_DEPTH");
    const long long kernels = v != nullptr ? atoll(v) : 0;
    return static_cast<uint64_t>(kernels > 0 ? kernels : kDefaultQueueDepth);
  }();
  return depth;
}

void SleepUntil(uint64_t deadline_ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(deadline_ns / 1000000000ull);
  ts.tv_nsec = static_cast<long>(deadline_ns % 1000000000ull);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }
}

void Enqueue(int ordinal, uint64_t kernels) {
  const int device = Physical(ordinal);
  const uint64_t kernel_ns = KernelNs();
  const uint64_t work_ns = kernels * kernel_ns;
  // A full launch queue blocks the launching thread, as on a real GPU.
  const uint64_t backlog_limit = QueueDepth() * kernel_ns;
  const uint64_t mine = g_last_finish[device].load(std::memory_order_acquire);
  const uint64_t now = NowNs();
  if (mine > now + backlog_limit) SleepUntil(mine - backlog_limit);
  std::atomic<uint64_t>& end = State().shared()->devices[device].timeline_end_ns;
  uint64_t current = end.load(std::memory_order_acquire);
  uint64_t finish = 0;
  do {
    const uint64_t start = current > NowNs() ? current : NowNs();
    finish = start + work_ns;
  } while (!end.compare_exchange_weak(current, finish, std::memory_order_acq_rel));
  uint64_t last = g_last_finish[device].load(std::memory_order_relaxed);
  while (finish > last && !g_last_finish[device].compare_exchange_weak(last, finish)) {
  }
  State().AddBusy(device, kernels, work_ns);
}

uint64_t LastFinishNs(int ordinal) {
  return g_last_finish[Physical(ordinal)].load(std::memory_order_acquire);
}

void WaitIdle(int ordinal) {
  const uint64_t finish = LastFinishNs(ordinal);
  if (finish > NowNs()) SleepUntil(finish);
}

void WaitAllIdle() {
  for (auto& last : g_last_finish) {
    const uint64_t finish = last.load(std::memory_order_acquire);
    if (finish > NowNs()) SleepUntil(finish);
  }
}

}  // namespace gpufrac::sim
