// Identifies processes across time: a pid plus its start time, so that a recycled pid is not
// mistaken for the process that held a ledger slot. Freestanding (libc only).
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace gpufrac {

// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or 0 when it
// cannot be read (no such process, or /proc hidden).
uint64_t ProcessStartTime(pid_t pid);

// False only when `pid` certainly no longer names the process that started at `start_time`: it is
// gone, a zombie, or the pid was recycled. Unknown states count as alive, so nothing is reclaimed
// from a live process.
bool ProcessIsAlive(pid_t pid, uint64_t start_time);

}  // namespace gpufrac
