// Internal interface of libgpufrac.so: the generated hook tables, the real driver's functions,
// configuration, and per-device accounting. Freestanding: libc, libdl and pthread only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/cuda_abi.h"
#include "runtime/ledger.h"
#include "runtime/nvml_abi.h"

#define GPUFRAC_EXPORT extern "C" __attribute__((visibility("default")))

namespace gpufrac::runtime {

enum class Library { CUDA, NVML };

// Hook ids, names and real-function types, generated from hooks.def.
enum class HookId : int {
#define GPUFRAC_HOOK(lib, symbol, params, args) symbol,
#include "runtime/hooks.def"
#undef GPUFRAC_HOOK
  kCount
};
constexpr int kHookCount = static_cast<int>(HookId::kCount);

namespace fn {
#define GPUFRAC_HOOK(lib, symbol, params, args) using symbol = int(*) params;
#include "runtime/hooks.def"
#undef GPUFRAC_HOOK
}  // namespace fn

// The real function behind a hook (resolving the real library on first use), or null when the
// real library lacks it.
void* RealFunction(HookId id);
#define REAL(symbol) \
  reinterpret_cast<::gpufrac::runtime::fn::symbol>(RealFunction(::gpufrac::runtime::HookId::symbol))

// A real driver function that gpufrac calls but does not hook, looked up by name.
void* RealDriverSymbol(const char* name);
// The same, typed, and looked up once into `*cached` (a function-local static at the call site).
template <typename Fn>
Fn RealDriverFunction(Fn* cached, const char* name) {
  if (*cached == nullptr) *cached = reinterpret_cast<Fn>(RealDriverSymbol(name));
  return *cached;
}

// Hook lookups for cuGetProcAddress and dlsym.
int FindHookByName(const char* name);
int FindHookByRealAddress(void* real);
void* HookAddress(int id);

// --- configuration (environment, read once) ---
enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
struct Config {
  bool passthrough = false;
  bool managed = false;  // a tenant is named: enforce
  char tenant[kTenantNameBytes] = {};
  LogLevel log_level = LogLevel::kWarn;
  uint64_t context_bytes = 0;
  bool compute = true;            // GPUFRAC_COMPUTE=off disables the compute gate alone
  uint64_t compute_slice_ns = 0;  // GPUFRAC_COMPUTE_SLICE_MS
  bool compute_drain = true;      // GPUFRAC_COMPUTE_DRAIN=off: charge leases by wall time only
  bool compute_inflight = true;   // GPUFRAC_COMPUTE_INFLIGHT=off: no bound on queued work
  bool compute_gang = true;       // GPUFRAC_COMPUTE_GANG=off: multi-GPU tenants' leases unaligned
};
const Config& GetConfig();
void Log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

// --- accounting ---
// Charges `bytes` to the tenant on device `ordinal` (as this process numbers devices) before the
// driver is asked. Returns CUDA_SUCCESS, or the error the caller returns instead of calling the
// driver: CUDA_ERROR_OUT_OF_MEMORY when refused, or the driver's own error when it cannot name the
// device yet (before cuInit), which the guarded call would have met too.
int ChargeDevice(int ordinal, uint64_t bytes);
void Credit(int ordinal, uint64_t bytes);
// The device of the calling thread's current context, or -1.
int CurrentOrdinal();
// Reconciles every pool's charge with its reservation after memory may have gone back to one
// (pool_hooks.cc).
void ReconcilePoolsAfterFree();
// The workload's view of a device: true and the tenant's limit and headroom when managed.
bool ManagedView(int ordinal, uint64_t* total, uint64_t* free_bytes, uint64_t* used);
// The same, for a device named by UUID (NVML's numbering differs from CUDA's).
bool ManagedViewByUuid(const char* uuid, uint64_t* total, uint64_t* free_bytes, uint64_t* used);

// The ledger entry that governs compute on device `ordinal`, if managed.
struct GateTarget {
  Ledger* ledger;
  int tenant;
  uint64_t generation;
  std::atomic<uint64_t>* held_lease;  // this process's, per device
};
bool ComputeTarget(int ordinal, GateTarget* target);

// Waits until this process's tenant may put work on `stream` of the current device
// (compute_gate.h), and keeps the work it has queued there short while others wait (inflight.h).
void GateLaunch(CUstream stream);

// Whether a stream capture is under way in this process (capture_hooks.cc): synchronizing then
// would invalidate it.
bool CaptureActive();

// Called after fork in the child: its allocations and contexts are not its own.
void ResetAccountingAfterFork();

}  // namespace gpufrac::runtime
