#include "runtime/ledger.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/quantity.h"
#include "runtime/process_identity.h"

namespace gpufrac {
namespace {

uint64_t Max(uint64_t a, uint64_t b) { return a > b ? a : b; }

bool ActiveGeneration(const TenantLimits& t, uint64_t generation) {
  return __atomic_load_n(&t.active, __ATOMIC_ACQUIRE) == 1 &&
         __atomic_load_n(&t.generation, __ATOMIC_ACQUIRE) == generation;
}

void* MapObject(const char* name, int flags, mode_t mode, size_t size, int prot, int* fd_out) {
  int fd = shm_open(name, flags | O_CLOEXEC, mode);
  if (fd < 0) return nullptr;
  if (flags & O_CREAT) {
    fchmod(fd, mode);  // umask must not narrow who may join
    struct stat st;
    if (fstat(fd, &st) != 0 ||
        (static_cast<size_t>(st.st_size) < size && ftruncate(fd, static_cast<off_t>(size)) != 0)) {
      close(fd);
      return nullptr;
    }
  }
  void* p = mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int saved = errno;
    close(fd);
    errno = saved;
    return nullptr;
  }
  if (fd_out != nullptr) {
    *fd_out = fd;
  } else {
    close(fd);
  }
  return p;
}

}  // namespace

void LedgerObjectName(const char* uuid, const char* part, char* out, int out_size) {
  snprintf(out, static_cast<size_t>(out_size), "/gpufrac.%s.%s", uuid, part);
}

Ledger::~Ledger() { Close(); }

void Ledger::Close() {
  if (limits_ != nullptr) munmap(limits_, sizeof(LimitsSegment));
  if (usage_ != nullptr) munmap(usage_, sizeof(UsageSegment));
  if (limits_fd_ >= 0) close(limits_fd_);
  limits_ = nullptr;
  usage_ = nullptr;
  limits_fd_ = -1;
}

bool Ledger::MapSegments(const char* uuid, bool owner, uint64_t total_bytes) {
  char limits_name[160];
  char usage_name[160];
  LedgerObjectName(uuid, "limits", limits_name, sizeof limits_name);
  LedgerObjectName(uuid, "usage", usage_name, sizeof usage_name);
  const int create = owner ? O_CREAT : 0;
  // Limits: owner-writable, world-readable. Usage: writable by tenants.
  limits_ = static_cast<LimitsSegment*>(
      MapObject(limits_name, (owner ? O_RDWR : O_RDONLY) | create, 0644, sizeof(LimitsSegment),
                owner ? PROT_READ | PROT_WRITE : PROT_READ, owner ? &limits_fd_ : nullptr));
  if (limits_ == nullptr) return false;
  usage_ = static_cast<UsageSegment*>(MapObject(
      usage_name, O_RDWR | create, 0666, sizeof(UsageSegment), PROT_READ | PROT_WRITE, nullptr));
  if (usage_ == nullptr) {
    Close();
    return false;
  }
  writable_limits_ = owner;
  if (owner) {
    LockOwner();
    if (limits_->magic != kLedgerMagic) {
      // Fresh objects are zero-filled; only the header needs writing.
      limits_->version = kLedgerVersion;
      limits_->total_bytes = total_bytes;
      snprintf(limits_->uuid, sizeof limits_->uuid, "%s", uuid);
      limits_->next_generation = 1;
      usage_->version = kLedgerVersion;
      __atomic_store_n(&usage_->magic, kLedgerMagic, __ATOMIC_RELEASE);
      __atomic_store_n(&limits_->magic, kLedgerMagic, __ATOMIC_RELEASE);
    }
    UnlockOwner();
  }
  if (__atomic_load_n(&limits_->magic, __ATOMIC_ACQUIRE) != kLedgerMagic ||
      limits_->version != kLedgerVersion) {
    Close();
    errno = EPROTO;
    return false;
  }
  return true;
}

bool Ledger::OpenAsOwner(const char* uuid, uint64_t total_bytes) {
  Close();
  return MapSegments(uuid, true, total_bytes);
}

bool Ledger::OpenAsTenant(const char* uuid) {
  Close();
  return MapSegments(uuid, false, 0);
}

void Ledger::LockOwner() {
  while (flock(limits_fd_, LOCK_EX) != 0 && errno == EINTR) {
  }
}

void Ledger::UnlockOwner() { flock(limits_fd_, LOCK_UN); }

void Ledger::AdjustCommitted(uint64_t request, uint64_t before, uint64_t after) {
  const uint64_t old_commit = Max(before, request);
  const uint64_t new_commit = Max(after, request);
  if (new_commit >= old_commit) {
    usage_->committed.fetch_add(new_commit - old_commit, std::memory_order_acq_rel);
  } else {
    usage_->committed.fetch_sub(old_commit - new_commit, std::memory_order_acq_rel);
  }
}

bool Ledger::RegisterTenant(const TenantSpec& spec, pid_t owner, int* index, char* why,
                            int why_size) {
  LockOwner();
  ReapDeadLocked();
  int free_index = -1;
  for (int i = 0; i < kMaxTenants; ++i) {
    const TenantLimits& t = limits_->tenants[i];
    if (t.active == 0) {
      if (free_index < 0) free_index = i;
      continue;
    }
    if (strncmp(t.spec.name, spec.name, kTenantNameBytes) == 0) {
      snprintf(why, static_cast<size_t>(why_size), "tenant '%s' already exists on this GPU",
               spec.name);
      UnlockOwner();
      return false;
    }
  }
  if (free_index < 0) {
    snprintf(why, static_cast<size_t>(why_size), "GPU already has %d tenants", kMaxTenants);
    UnlockOwner();
    return false;
  }
  // Compute guarantees cannot add up to more than the whole GPU either.
  double compute_promised = spec.compute_request;
  for (const TenantLimits& t : limits_->tenants) {
    if (t.active != 0) compute_promised += t.spec.compute_request;
  }
  constexpr double kRoundingSlack = 1e-9;
  if (compute_promised > 1 + kRoundingSlack) {
    snprintf(why, static_cast<size_t>(why_size),
             "compute request %.3f does not fit: %.3f of the GPU is already guaranteed",
             spec.compute_request, compute_promised - spec.compute_request);
    UnlockOwner();
    return false;
  }
  // Admission: the request must fit beside everything already promised or in use, so that no
  // tenant's guarantee is ever backed by memory someone else holds.
  uint64_t committed = usage_->committed.load(std::memory_order_acquire);
  for (;;) {
    if (committed + spec.memory_request > limits_->total_bytes) {
      char asked[24], free_bytes[24], total[24];
      FormatBytes(spec.memory_request, asked, sizeof asked);
      FormatBytes(committed < limits_->total_bytes ? limits_->total_bytes - committed : 0,
                  free_bytes, sizeof free_bytes);
      FormatBytes(limits_->total_bytes, total, sizeof total);
      snprintf(why, static_cast<size_t>(why_size),
               "asked %s, but only %s of %s is neither promised to nor used by other tenants",
               asked, free_bytes, total);
      UnlockOwner();
      return false;
    }
    if (usage_->committed.compare_exchange_weak(committed, committed + spec.memory_request,
                                                std::memory_order_acq_rel)) {
      break;
    }
  }
  TenantLimits& t = limits_->tenants[free_index];
  const uint64_t generation = limits_->next_generation++;
  TenantUsage& u = usage_->tenants[free_index];
  u.used.store(0, std::memory_order_relaxed);
  u.peak.store(0, std::memory_order_relaxed);
  u.refusals.store(0, std::memory_order_relaxed);
  // A new tenant starts level with the others, neither owed nor owing GPU time.
  u.pass.store(usage_->compute.virtual_time.load(std::memory_order_acquire),
               std::memory_order_relaxed);
  u.demand_ns.store(0, std::memory_order_relaxed);
  u.waiting.store(0, std::memory_order_relaxed);
  u.share_permille.store(0, std::memory_order_relaxed);
  u.not_before_ns.store(0, std::memory_order_relaxed);
  u.gpu_time_ns.store(0, std::memory_order_relaxed);
  u.throttled_ns.store(0, std::memory_order_relaxed);
  u.generation.store(generation, std::memory_order_release);
  t.spec = spec;
  t.spec.name[kTenantNameBytes - 1] = '\0';
  t.owner_pid = owner;
  t.owner_start = ProcessStartTime(owner);
  __atomic_store_n(&t.generation, generation, __ATOMIC_RELEASE);
  __atomic_store_n(&t.active, 1u, __ATOMIC_RELEASE);
  *index = free_index;
  UnlockOwner();
  return true;
}

void Ledger::UnregisterTenant(int index, uint64_t generation) {
  if (index < 0 || index >= kMaxTenants) return;
  LockOwner();
  UnregisterLocked(index, generation);
  UnlockOwner();
}

bool Ledger::AdoptTenant(int index, uint64_t generation, pid_t owner) {
  if (index < 0 || index >= kMaxTenants) return false;
  LockOwner();
  TenantLimits& t = limits_->tenants[index];
  const bool live = ActiveGeneration(t, generation);
  if (live) {
    t.owner_pid = owner;
    t.owner_start = ProcessStartTime(owner);
  }
  UnlockOwner();
  return live;
}

void Ledger::UnregisterLocked(int index, uint64_t generation) {
  TenantLimits& t = limits_->tenants[index];
  if (ActiveGeneration(t, generation)) {
    __atomic_store_n(&t.active, 0u, __ATOMIC_RELEASE);
    TenantUsage& u = usage_->tenants[index];
    u.generation.store(0, std::memory_order_release);
    const uint64_t used = u.used.exchange(0, std::memory_order_acq_rel);
    usage_->committed.fetch_sub(Max(used, t.spec.memory_request), std::memory_order_acq_rel);
    for (ProcessSlot& slot : usage_->processes) {
      if (slot.pid.load(std::memory_order_acquire) > 0 &&
          slot.tenant == static_cast<uint32_t>(index) && slot.generation == generation) {
        slot.charged.store(0, std::memory_order_relaxed);
        slot.pid.store(0, std::memory_order_release);
      }
    }
  }
}

uint64_t Ledger::ReapDead() {
  if (!writable_limits_) return ReapDeadLocked();
  LockOwner();
  const uint64_t reclaimed = ReapDeadLocked();
  UnlockOwner();
  return reclaimed;
}

uint64_t Ledger::ReapDeadLocked() {
  uint64_t reclaimed = 0;
  bool tenant_has_live_process[kMaxTenants] = {};
  for (int i = 0; i < kMaxProcesses; ++i) {
    ProcessSlot& slot = usage_->processes[i];
    const int32_t pid = slot.pid.load(std::memory_order_acquire);
    if (pid <= 0) continue;
    if (ProcessIsAlive(pid, slot.start_time)) {
      if (slot.tenant < kMaxTenants) tenant_has_live_process[slot.tenant] = true;
      continue;
    }
    reclaimed += ReclaimSlot(i);
  }
  if (!writable_limits_) return reclaimed;
  // Tenants whose owner died (a gpufrac run that was SIGKILLed) and that hold no live process.
  for (int i = 0; i < kMaxTenants; ++i) {
    const TenantLimits& t = limits_->tenants[i];
    if (__atomic_load_n(&t.active, __ATOMIC_ACQUIRE) == 0 || tenant_has_live_process[i]) continue;
    if (ProcessIsAlive(t.owner_pid, t.owner_start)) continue;
    UnregisterLocked(i, t.generation);
  }
  return reclaimed;
}

int Ledger::FindTenant(const char* name, uint64_t* generation) const {
  for (int i = 0; i < kMaxTenants; ++i) {
    const TenantLimits& t = limits_->tenants[i];
    if (__atomic_load_n(&t.active, __ATOMIC_ACQUIRE) != 1) continue;
    if (strncmp(t.spec.name, name, kTenantNameBytes) != 0) continue;
    *generation = __atomic_load_n(&t.generation, __ATOMIC_ACQUIRE);
    return i;
  }
  return -1;
}

Refusal Ledger::Reserve(int index, uint64_t generation, int slot, uint64_t bytes) {
  const TenantLimits& t = limits_->tenants[index];
  TenantUsage& u = usage_->tenants[index];
  if (!ActiveGeneration(t, generation) ||
      u.generation.load(std::memory_order_acquire) != generation) {
    return Refusal::kNotRegistered;
  }
  const uint64_t request = t.spec.memory_request;
  const uint64_t limit = t.spec.memory_limit;
  uint64_t used = u.used.load(std::memory_order_acquire);
  for (;;) {
    if (bytes > limit || used > limit - bytes) return Refusal::kTenantLimit;
    if (u.used.compare_exchange_weak(used, used + bytes, std::memory_order_acq_rel)) break;
  }
  const uint64_t after = used + bytes;
  const uint64_t growth = Max(after, request) - Max(used, request);
  if (growth > 0) {
    uint64_t committed = usage_->committed.load(std::memory_order_acquire);
    for (;;) {
      if (committed + growth > limits_->total_bytes) {
        // Undo through the same bookkeeping as a free: the usage step is counted in committed
        // first, so the release's matching decrement leaves committed exact.
        usage_->committed.fetch_add(growth, std::memory_order_acq_rel);
        ReleaseUnchecked(index, bytes);
        return Refusal::kCardFull;
      }
      if (usage_->committed.compare_exchange_weak(committed, committed + growth,
                                                  std::memory_order_acq_rel)) {
        break;
      }
    }
  }
  uint64_t peak = u.peak.load(std::memory_order_relaxed);
  while (after > peak && !u.peak.compare_exchange_weak(peak, after, std::memory_order_relaxed)) {
  }
  if (slot >= 0) usage_->processes[slot].charged.fetch_add(bytes, std::memory_order_acq_rel);
  return Refusal::kNone;
}

void Ledger::ReleaseUnchecked(int index, uint64_t bytes) {
  TenantUsage& u = usage_->tenants[index];
  const uint64_t request = limits_->tenants[index].spec.memory_request;
  uint64_t used = u.used.load(std::memory_order_acquire);
  uint64_t after = 0;
  do {
    after = used > bytes ? used - bytes : 0;
  } while (!u.used.compare_exchange_weak(used, after, std::memory_order_acq_rel));
  AdjustCommitted(request, used, after);
}

void Ledger::Release(int index, uint64_t generation, int slot, uint64_t bytes) {
  if (slot >= 0) {
    ProcessSlot& s = usage_->processes[slot];
    uint64_t charged = s.charged.load(std::memory_order_acquire);
    while (!s.charged.compare_exchange_weak(charged, charged > bytes ? charged - bytes : 0,
                                            std::memory_order_acq_rel)) {
    }
  }
  if (!ActiveGeneration(limits_->tenants[index], generation)) return;  // tenant already gone
  ReleaseUnchecked(index, bytes);
}

int Ledger::ClaimSlot(int index, uint64_t generation, pid_t pid, uint64_t start_time) {
  for (int i = 0; i < kMaxProcesses; ++i) {
    ProcessSlot& slot = usage_->processes[i];
    int32_t expected = 0;
    if (slot.pid.load(std::memory_order_relaxed) != 0) continue;
    // Claim with a placeholder first, so nobody sees a half-written slot as live.
    if (!slot.pid.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) continue;
    slot.tenant = static_cast<uint32_t>(index);
    slot.generation = generation;
    slot.start_time = start_time;
    slot.charged.store(0, std::memory_order_relaxed);
    slot.pid.store(pid, std::memory_order_release);
    return i;
  }
  return -1;
}

uint64_t Ledger::ReclaimSlot(int slot_index) {
  ProcessSlot& slot = usage_->processes[slot_index];
  int32_t pid = slot.pid.load(std::memory_order_acquire);
  // Exactly one reclaimer wins the slot.
  if (pid <= 0 || !slot.pid.compare_exchange_strong(pid, -1, std::memory_order_acq_rel)) return 0;
  const uint64_t charged = slot.charged.exchange(0, std::memory_order_acq_rel);
  const int index = static_cast<int>(slot.tenant);
  if (charged > 0 && index < kMaxTenants &&
      ActiveGeneration(limits_->tenants[index], slot.generation)) {
    ReleaseUnchecked(index, charged);
  }
  slot.pid.store(0, std::memory_order_release);
  return charged;
}

int Ledger::FindSlot(pid_t pid, uint64_t start_time) const {
  for (int i = 0; i < kMaxProcesses; ++i) {
    const ProcessSlot& slot = usage_->processes[i];
    if (slot.pid.load(std::memory_order_acquire) == pid && slot.start_time == start_time) return i;
  }
  return -1;
}

uint64_t Ledger::Headroom(int index, uint64_t generation) const {
  const TenantLimits& t = limits_->tenants[index];
  if (!ActiveGeneration(t, generation)) return 0;
  const uint64_t used = usage_->tenants[index].used.load(std::memory_order_acquire);
  const uint64_t limit = t.spec.memory_limit;
  const uint64_t under_limit = limit > used ? limit - used : 0;
  const uint64_t unused_request = t.spec.memory_request > used ? t.spec.memory_request - used : 0;
  const uint64_t committed = usage_->committed.load(std::memory_order_acquire);
  const uint64_t card_free =
      limits_->total_bytes > committed ? limits_->total_bytes - committed : 0;
  const uint64_t card_room = unused_request + card_free;
  return under_limit < card_room ? under_limit : card_room;
}

bool Ledger::ReadTenant(int index, uint64_t generation, TenantSpec* spec, uint64_t* used) const {
  const TenantLimits& t = limits_->tenants[index];
  if (!ActiveGeneration(t, generation)) return false;
  *spec = t.spec;
  *used = usage_->tenants[index].used.load(std::memory_order_acquire);
  return true;
}

}  // namespace gpufrac
