// The simulated driver's per-process state: which devices this process sees, its contexts, and
// the handles it has been given. Shared by the files that implement the driver's entry points.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/cuda_abi.h"
#include "sim/sim_state.h"

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace gpufrac::sim {

struct Context {
  int ordinal;  // device as this process numbers it
  bool primary;
};

struct Pool {
  int ordinal;
  uint64_t reserved = 0;           // physically held
  uint64_t used = 0;               // handed out
  uint64_t release_threshold = 0;  // kept cached across synchronizations
  // cuMemPoolDestroy was called: takes no new allocations, and releases its whole reservation
  // when its last allocation is freed (at once if it has none).
  bool destroyed = false;
  // A last free ordered on a stream happens when the stream reaches it: the release waits until
  // then (0: not waiting).
  uint64_t release_at_ns = 0;
};

struct Allocation {
  int ordinal;
  uint64_t bytes;
  Pool* pool;    // non-null for stream-ordered allocations
  bool charged;  // false for imported / IPC mappings
};

struct Process {
  std::mutex mu;
  bool initialized = false;
  std::vector<int> visible;  // ordinal -> physical device index
  std::vector<Context*> primary;
  std::vector<int> primary_refs;
  std::vector<Pool*> default_pools;
  std::vector<Pool*> pools;  // every live pool, default ones included
  // Destroyed pools whose memory is all released. cuMemPoolCreate hands them out again, so a new
  // pool can get a destroyed pool's handle, as a real driver may reuse a freed handle's value.
  std::vector<Pool*> released_pools;
  // Destroyed pools whose last free is queued behind work still running (Pool::release_at_ns).
  std::vector<Pool*> releasing_pools;
  std::unordered_map<uint64_t, Allocation> allocations;  // device pointers and VMM handles
  uint64_t next_address = 0x100000000000ull;             // fake device addresses: never touched
  uint64_t next_handle = 1;
};

Process& Proc();
// CUDA_ERROR_NOT_INITIALIZED unless cuInit succeeded.
CUresult CheckInit();
CUresult CheckOrdinal(CUdevice ordinal);
int Physical(int ordinal);
// The calling thread's current context, or null.
Context* CurrentContext();
// Hands out an address range (aligned to 512 bytes) in the fake device address space.
uint64_t NewAddress(uint64_t bytes);
// Releases cached pool memory above each pool's threshold, as a synchronization does.
void ReleaseCachedPools();
// A stream-ordered free as the device runs it (a launched graph's free node).
void RunCapturedFree(CUdeviceptr dptr);
// True when `stream` is capturing: the free is recorded into its graph, to run at each launch.
bool CaptureFree(CUstream stream, CUdeviceptr dptr);

}  // namespace gpufrac::sim
