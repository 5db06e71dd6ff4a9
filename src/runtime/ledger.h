// The per-GPU ledger: two POSIX shared-memory objects per physical GPU, named after its UUID.
//
//   /gpufrac.<uuid>.limits  written only by the tenants' owner (gpufrac run, later the node agent);
//                           tenants map it read-only. Holds each tenant's request and limit.
//   /gpufrac.<uuid>.usage   written by tenant processes: per-tenant usage, the GPU's committed
//                           bytes, and one slot per process (pid, start time, bytes it holds).
//
// Reservations are lock-free compare-and-swap loops made *before* the driver is called, so no
// interleaving of processes can take a tenant past its limit or the card past its size. Owners
// serialize their own changes (register, unregister, reap) with flock() on the limits object,
// which the kernel releases when an owner dies: no lock can hang on a dead holder.
//
// Freestanding (libc only): the interposer links it into every workload.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace gpufrac {

constexpr uint32_t kLedgerMagic = 0x52465047;  // "GPFR"
constexpr uint32_t kLedgerVersion = 5;         // bumped whenever the layout changes
constexpr int kMaxTenants = 64;
constexpr int kMaxProcesses = 1024;
constexpr int kTenantNameBytes = 64;
constexpr int kUuidBytes = 80;
constexpr int kMaxGangGpus = 8;

enum class ComputeMode : uint32_t { kFair = 0, kStrict = 1 };
enum class Priority : uint32_t { kInference = 0, kBatch = 1 };

// What an owner sets for one tenant on one GPU.
struct TenantSpec {
  char name[kTenantNameBytes] = {};
  uint64_t memory_request = 0;  // guaranteed bytes
  uint64_t memory_limit = 0;    // burstable cap, >= request
  // Compute share, for the compute-sharing runtime (stored, not yet enforced).
  double compute_request = 0;
  double compute_limit = 1;
  ComputeMode compute_mode = ComputeMode::kFair;
  Priority priority = Priority::kInference;
  // A tenant spread over several GPUs (tensor parallel) lists all of them, this one included, so
  // that each GPU's compute gate can line its leases up with the others (compute_gate.h).
  uint32_t gang_size = 0;
  char gang[kMaxGangGpus][kUuidBytes] = {};
};

struct TenantLimits {
  uint32_t active;  // 1 while registered
  uint32_t reserved0;
  uint64_t generation;   // new at each registration; ties usage and slots to this incarnation
  pid_t owner_pid;       // who registered it; the tenant is stale once the owner and all its
  uint64_t owner_start;  // processes are gone
  TenantSpec spec;
};

struct LimitsSegment {
  uint32_t magic;
  uint32_t version;
  uint64_t total_bytes;  // the card's memory
  char uuid[kUuidBytes];
  uint64_t next_generation;
  TenantLimits tenants[kMaxTenants];
};

struct TenantUsage {
  std::atomic<uint64_t> generation;  // equals the limits' generation while the tenant is live
  std::atomic<uint64_t> used;        // bytes charged to the tenant, all processes together
  std::atomic<uint64_t> peak;
  std::atomic<uint64_t> refusals;  // allocations refused at the limit
  // Compute sharing (compute_gate.h). Times are CLOCK_MONOTONIC nanoseconds.
  std::atomic<uint64_t> pass;            // stride-scheduling virtual time: GPU time / weight
  std::atomic<uint64_t> demand_ns;       // when a process of the tenant last launched work
  std::atomic<uint32_t> waiting;         // threads of the tenant waiting at the gate now
  std::atomic<uint32_t> share_permille;  // its entitled share among busy tenants, last decided
  std::atomic<uint64_t> not_before_ns;   // strict/limited tenants: earliest next turn
  std::atomic<uint64_t> gpu_time_ns;     // GPU time it held the device
  std::atomic<uint64_t> throttled_ns;    // time its launches waited at the gate
  // When its last lease ended, pushed later by its processes as they find how long the work they
  // had queued ran on into the next holder's lease (that tail is charged to this tenant).
  std::atomic<uint64_t> tail_end_ns;
};

// Who may put work on the GPU now: one tenant at a time holds a time-slice lease.
struct ComputeState {
  std::atomic<uint64_t> lease;  // (end_ns << 8) | (holder + 1); 0: nobody
  std::atomic<uint64_t> lease_start_ns;
  std::atomic<uint64_t> virtual_time;  // where tenants waking from idle start
  std::atomic<uint32_t> sequence;      // futex word: bumped at every lease decision
  std::atomic<int32_t> decider;        // pid deciding the next lease, 0 when none
  std::atomic<uint64_t> decider_since_ns;
  std::atomic<uint32_t> busy_inference;  // busy inference tenants at the last decision
  std::atomic<uint32_t> live_inference;  // registered inference tenants, busy or not
};

struct ProcessSlot {
  std::atomic<int32_t> pid;  // 0 free, > 0 held, -1 being reclaimed
  uint32_t tenant;
  uint64_t generation;
  uint64_t start_time;
  std::atomic<uint64_t> charged;  // bytes this process holds
};

struct UsageSegment {
  uint32_t magic;
  uint32_t version;
  // Sum over live tenants of max(used, request): what the card has promised or handed out. Never
  // exceeds total_bytes, which is how the card is kept from being over-committed.
  std::atomic<uint64_t> committed;
  ComputeState compute;
  TenantUsage tenants[kMaxTenants];
  ProcessSlot processes[kMaxProcesses];
};

// Why a reservation was refused.
enum class Refusal { kNone, kTenantLimit, kCardFull, kNotRegistered };

// One GPU's ledger as mapped into this process.
class Ledger {
 public:
  Ledger() = default;
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;
  ~Ledger();

  // Owner side: creates (or opens) the ledger for a GPU. Returns false with errno set on failure.
  bool OpenAsOwner(const char* uuid, uint64_t total_bytes);
  // Tenant side: maps limits read-only and usage read-write. False if no ledger exists.
  bool OpenAsTenant(const char* uuid);
  void Close();

  bool is_open() const { return limits_ != nullptr; }
  uint64_t total_bytes() const { return limits_->total_bytes; }
  const LimitsSegment* limits() const { return limits_; }
  UsageSegment* usage() const { return usage_; }

  // --- owner operations (take the owner lock) ---
  // Registers a tenant. Refuses if the name is taken by a live tenant, the table is full, or its
  // request does not fit what the card has committed. `why` gets a one-line reason.
  bool RegisterTenant(const TenantSpec& spec, pid_t owner, int* index, char* why, int why_size);
  // Removes a tenant and releases everything charged to it.
  void UnregisterTenant(int index, uint64_t generation);
  // Makes `owner` (a restarted node agent) the owner of a live tenant, so that the tenant is not
  // reaped as orphaned while its processes run. False if `generation` is no longer live.
  bool AdoptTenant(int index, uint64_t generation, pid_t owner);
  // Reclaims the slots of dead processes and removes tenants whose owner and processes are all
  // gone. Returns the number of bytes reclaimed. Safe to call from several owners at once.
  uint64_t ReapDead();
  // Sum of the requests of live tenants plus what they use beyond their requests.
  uint64_t Committed() const { return usage_->committed.load(std::memory_order_acquire); }

  // --- tenant operations (lock-free) ---
  // Finds a live tenant by name; returns its index and generation, or -1.
  int FindTenant(const char* name, uint64_t* generation) const;
  // Reserves `bytes` for tenant `index` (generation-checked) and records them in this process's
  // slot. On refusal nothing is charged.
  Refusal Reserve(int index, uint64_t generation, int slot, uint64_t bytes);
  // Returns bytes reserved earlier.
  void Release(int index, uint64_t generation, int slot, uint64_t bytes);
  // Claims a process slot for (pid, start_time) in tenant `index`; returns -1 when full.
  int ClaimSlot(int index, uint64_t generation, pid_t pid, uint64_t start_time);
  // Releases what a slot holds and frees it (the process is gone, or exec'd a new image).
  uint64_t ReclaimSlot(int slot);
  // Finds a slot held by (pid, start_time), or -1.
  int FindSlot(pid_t pid, uint64_t start_time) const;

  // What tenant `index` may still allocate: min(limit - used, what the card can still give it).
  uint64_t Headroom(int index, uint64_t generation) const;
  // Reads the spec of a live tenant; false if `generation` no longer matches.
  bool ReadTenant(int index, uint64_t generation, TenantSpec* spec, uint64_t* used) const;

 private:
  bool MapSegments(const char* uuid, bool owner, uint64_t total_bytes);
  void LockOwner();
  void UnlockOwner();
  // Applies a change of a tenant's usage from `before` to `after` to the committed total.
  void AdjustCommitted(uint64_t request, uint64_t before, uint64_t after);
  void ReleaseUnchecked(int index, uint64_t bytes);
  // The owner lock must be held (when this process is an owner) for these.
  void UnregisterLocked(int index, uint64_t generation);
  uint64_t ReapDeadLocked();

  LimitsSegment* limits_ = nullptr;
  UsageSegment* usage_ = nullptr;
  int limits_fd_ = -1;
  bool writable_limits_ = false;
};

// The shm object name for a GPU's ledger part ("limits" or "usage"), as "/gpufrac.<uuid>.<part>".
void LedgerObjectName(const char* uuid, const char* part, char* out, int out_size);

}  // namespace gpufrac
