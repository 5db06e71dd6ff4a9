// Per-device accounting for this process: finds the tenant in each GPU's ledger, holds this
// process's slot there, and turns charges and credits into ledger reservations.
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/quantity.h"
#include "runtime/interposer.h"
#include "runtime/process_identity.h"

namespace gpufrac::runtime {
namespace {

constexpr int kMaxDevices = 64;

enum class DeviceMode : int { kUnknown = 0, kManaged, kDenied };

struct DeviceState {
  DeviceMode mode;
  Ledger ledger;
  int tenant;
  uint64_t generation;
  int slot;
  char uuid[kUuidBytes];
  bool refusal_logged;
  // The compute lease this process last launched under on the device (compute_gate.h), so that
  // it can measure the tail of its work once the lease passes to another tenant.
  std::atomic<uint64_t> held_lease;
};

// Mapped at first use and never destroyed: no exit-time destructor may unmap a ledger that
// another thread is still charging.
DeviceState* g_devices = nullptr;
pthread_once_t g_devices_once = PTHREAD_ONCE_INIT;
pthread_mutex_t g_setup_mu = PTHREAD_MUTEX_INITIALIZER;

void MapDevices() {
  void* p = mmap(nullptr, sizeof(DeviceState) * kMaxDevices, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  auto* devices = static_cast<DeviceState*>(p);
  for (int i = 0; i < kMaxDevices; ++i) new (&devices[i]) DeviceState{};
  g_devices = devices;
}

DeviceState* Devices() {
  pthread_once(&g_devices_once, MapDevices);
  return g_devices;
}

void FormatUuid(const CUuuid& uuid, char* out, size_t size) {
  const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
  snprintf(out, size, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
}

// CUDA_SUCCESS, or the driver's reason it cannot name the device (not initialized yet, no such
// device).
int DeviceUuid(int ordinal, char* out, size_t size) {
  using UuidFn = int (*)(CUuuid*, CUdevice);
  auto get_uuid = reinterpret_cast<UuidFn>(RealDriverSymbol("cuDeviceGetUuid_v2"));
  if (get_uuid == nullptr) get_uuid = reinterpret_cast<UuidFn>(RealDriverSymbol("cuDeviceGetUuid"));
  if (get_uuid == nullptr) return CUDA_ERROR_NOT_FOUND;
  CUuuid uuid{};
  if (const int r = get_uuid(&uuid, ordinal); r != CUDA_SUCCESS) return r;
  FormatUuid(uuid, out, size);
  return CUDA_SUCCESS;
}

// The i-th entry of a comma list ("20GiB,0.5"), or the only entry when there is one.
bool ListEntry(const char* list, int index, char* out, size_t size) {
  int current = 0;
  const char* start = list;
  int entries = 1;
  for (const char* p = list; *p; ++p) entries += (*p == ',');
  if (entries == 1) index = 0;
  for (const char* p = list;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (current == index) {
        const size_t n = static_cast<size_t>(p - start);
        if (n + 1 > size) return false;
        memcpy(out, start, n);
        out[n] = '\0';
        return true;
      }
      if (*p == '\0') return false;
      ++current;
      start = p + 1;
    }
  }
}

// What self-registration came to: kNotAsked without the variables; kRefused after it logged why
// (so the caller does not add a vaguer reason of its own).
enum class SelfRegistration { kNotAsked, kRegistered, kRefused };

// Self-registration from GPUFRAC_MEMORY_REQUEST / GPUFRAC_MEMORY_LIMIT, for a workload started
// without gpufrac run. Needs write access to the limits, which an agent-owned ledger denies.
SelfRegistration SelfRegister(DeviceState& d, int ordinal, uint64_t card_bytes) {
  const char* request_env = getenv("GPUFRAC_MEMORY_REQUEST");
  const char* limit_env = getenv("GPUFRAC_MEMORY_LIMIT");
  if (request_env == nullptr && limit_env == nullptr) return SelfRegistration::kNotAsked;
  char text[64];
  MemoryAmount request{}, limit{};
  const char* first = request_env != nullptr ? request_env : limit_env;
  if (!ListEntry(first, ordinal, text, sizeof text) ||
      ParseMemoryAmount(text, &request) != ParseError::kNone) {
    Log(LogLevel::kError,
        "GPUFRAC_MEMORY_REQUEST/LIMIT '%s' has no valid entry for device %d: allocations there "
        "are refused",
        first, ordinal);
    return SelfRegistration::kRefused;
  }
  limit = request;
  if (limit_env != nullptr && (!ListEntry(limit_env, ordinal, text, sizeof text) ||
                               ParseMemoryAmount(text, &limit) != ParseError::kNone)) {
    Log(LogLevel::kError,
        "GPUFRAC_MEMORY_LIMIT '%s' has no valid entry for device %d: allocations there are refused",
        limit_env, ordinal);
    return SelfRegistration::kRefused;
  }
  TenantSpec spec;
  snprintf(spec.name, sizeof spec.name, "%s", GetConfig().tenant);
  spec.memory_request = request.Resolve(card_bytes);
  spec.memory_limit = limit.Resolve(card_bytes);
  char asked[24], bound[24];
  if (spec.memory_limit < spec.memory_request) {
    // Raising the limit silently would grant more than was written; lowering the request would
    // guarantee less. Neither is what the user meant.
    FormatBytes(spec.memory_limit, bound, sizeof bound);
    FormatBytes(spec.memory_request, asked, sizeof asked);
    Log(LogLevel::kError,
        "GPUFRAC_MEMORY_LIMIT (%s) is below GPUFRAC_MEMORY_REQUEST (%s) on device %d: allocations "
        "there are refused",
        bound, asked, ordinal);
    return SelfRegistration::kRefused;
  }
  if (spec.memory_limit > card_bytes) {
    FormatBytes(spec.memory_limit, asked, sizeof asked);
    FormatBytes(card_bytes, bound, sizeof bound);
    Log(LogLevel::kError,
        "GPUFRAC_MEMORY_REQUEST/LIMIT asks %s of device %d, which has %s in all: allocations there "
        "are refused",
        asked, ordinal, bound);
    return SelfRegistration::kRefused;
  }
  Ledger owner;
  if (!owner.OpenAsOwner(d.uuid, card_bytes)) {
    Log(LogLevel::kError,
        "cannot register tenant '%s' on device %d: its ledger is not writable here (is it owned "
        "by the node agent? then start the workload through it): allocations there are refused",
        spec.name, ordinal);
    return SelfRegistration::kRefused;
  }
  int index = -1;
  char why[200];
  if (!owner.RegisterTenant(spec, getpid(), &index, why, sizeof why)) {
    // Another process of the same tenant may have won the race: then FindTenant finds it.
    uint64_t generation = 0;
    if (owner.FindTenant(spec.name, &generation) < 0) {
      Log(LogLevel::kError,
          "cannot register tenant '%s' on device %d: %s: allocations there are refused", spec.name,
          ordinal, why);
      return SelfRegistration::kRefused;
    }
  }
  return SelfRegistration::kRegistered;
}

// Finds the tenant on the device and claims this process's slot. kUnknown, with the driver's
// error in *lookup_error, while the driver cannot name the device.
DeviceMode SetUpDevice(int ordinal, DeviceState& d, int* lookup_error) {
  d.slot = -1;
  d.refusal_logged = false;
  *lookup_error = DeviceUuid(ordinal, d.uuid, sizeof d.uuid);
  if (*lookup_error != CUDA_SUCCESS) return DeviceMode::kUnknown;
  bool opened = d.ledger.OpenAsTenant(d.uuid);
  SelfRegistration self = SelfRegistration::kNotAsked;
  if (!opened || d.ledger.FindTenant(GetConfig().tenant, &d.generation) < 0) {
    size_t total = 0;
    using TotalFn = int (*)(size_t*, CUdevice);
    auto total_mem = reinterpret_cast<TotalFn>(RealDriverSymbol("cuDeviceTotalMem_v2"));
    if (total_mem != nullptr && total_mem(&total, ordinal) == CUDA_SUCCESS) {
      self = SelfRegister(d, ordinal, total);
    }
    if (self == SelfRegistration::kRegistered) opened = d.ledger.OpenAsTenant(d.uuid);
  }
  d.tenant = opened ? d.ledger.FindTenant(GetConfig().tenant, &d.generation) : -1;
  if (d.tenant < 0 && self == SelfRegistration::kRefused) return DeviceMode::kDenied;
  if (d.tenant < 0) {
    // A named tenant with no share on this GPU gets nothing there, rather than all of it.
    Log(LogLevel::kError, "tenant '%s' has no share of GPU %d (%s): allocations there are refused",
        GetConfig().tenant, ordinal, d.uuid);
    return DeviceMode::kDenied;
  }
  const pid_t pid = getpid();
  const uint64_t start = ProcessStartTime(pid);
  // After exec the new image inherits the pid: what the old image held was freed by the driver.
  for (int stale = d.ledger.FindSlot(pid, start); stale >= 0;
       stale = d.ledger.FindSlot(pid, start)) {
    d.ledger.ReclaimSlot(stale);
  }
  d.slot = d.ledger.ClaimSlot(d.tenant, d.generation, pid, start);
  if (d.slot < 0) {
    d.ledger.ReapDead();
    d.slot = d.ledger.ClaimSlot(d.tenant, d.generation, pid, start);
  }
  if (d.slot < 0) {
    Log(LogLevel::kWarn,
        "no free process slot on %s: this process's memory is not reclaimed "
        "if it dies",
        d.uuid);
  }
  return DeviceMode::kManaged;
}

// The device's state, set up at first use. Null while the driver cannot name the device (a call
// before cuInit, an ordinal it lacks), with the driver's error in *lookup_error (CUDA_SUCCESS when
// the ordinal is outside what gpufrac tracks). The mode then stays unknown, so that the next call
// asks again: a call before cuInit must not decide how the device is treated for good.
DeviceState* Device(int ordinal, int* lookup_error) {
  *lookup_error = CUDA_SUCCESS;
  DeviceState* devices = Devices();
  if (devices == nullptr || ordinal < 0 || ordinal >= kMaxDevices) return nullptr;
  DeviceState& d = devices[ordinal];
  if (__atomic_load_n(&d.mode, __ATOMIC_ACQUIRE) != DeviceMode::kUnknown) return &d;
  pthread_mutex_lock(&g_setup_mu);
  if (d.mode == DeviceMode::kUnknown) {
    // Everything SetUpDevice writes is published by the release store of the mode.
    const DeviceMode mode = SetUpDevice(ordinal, d, lookup_error);
    __atomic_store_n(&d.mode, mode, __ATOMIC_RELEASE);
  }
  const bool known = d.mode != DeviceMode::kUnknown;
  pthread_mutex_unlock(&g_setup_mu);
  return known ? &d : nullptr;
}

DeviceState* Device(int ordinal) {
  int ignored = CUDA_SUCCESS;
  return Device(ordinal, &ignored);
}

void LogRefusal(DeviceState& d, int ordinal, uint64_t bytes, Refusal why) {
  if (d.refusal_logged) return;
  d.refusal_logged = true;
  TenantSpec spec;
  uint64_t used = 0;
  if (!d.ledger.ReadTenant(d.tenant, d.generation, &spec, &used)) return;
  char asked[24], limit[24], in_use[24];
  FormatBytes(bytes, asked, sizeof asked);
  FormatBytes(spec.memory_limit, limit, sizeof limit);
  FormatBytes(used, in_use, sizeof in_use);
  Log(LogLevel::kError,
      "out of memory: tenant '%s' on GPU %d (%s) asked for %s; limit %s, in use %s%s",
      GetConfig().tenant, ordinal, d.uuid, asked, limit, in_use,
      why == Refusal::kCardFull ? " (the card is full: other tenants hold the rest)" : "");
}

}  // namespace

int ChargeDevice(int ordinal, uint64_t bytes) {
  if (!GetConfig().managed) return CUDA_SUCCESS;
  int lookup_error = CUDA_SUCCESS;
  DeviceState* d = Device(ordinal, &lookup_error);
  // The driver cannot name the device, so it would fail the call too: fail it the same way
  // rather than let it through uncharged.
  if (d == nullptr) return lookup_error;
  if (d->mode == DeviceMode::kDenied) return CUDA_ERROR_OUT_OF_MEMORY;
  Refusal r = d->ledger.Reserve(d->tenant, d->generation, d->slot, bytes);
  if (r == Refusal::kTenantLimit || r == Refusal::kCardFull) {
    // Dead processes may still be charged; the real driver would already have freed them.
    if (d->ledger.ReapDead() > 0) r = d->ledger.Reserve(d->tenant, d->generation, d->slot, bytes);
  }
  if (r == Refusal::kNone) return CUDA_SUCCESS;
  d->ledger.usage()->tenants[d->tenant].refusals.fetch_add(1, std::memory_order_relaxed);
  LogRefusal(*d, ordinal, bytes, r);
  return CUDA_ERROR_OUT_OF_MEMORY;
}

void Credit(int ordinal, uint64_t bytes) {
  if (!GetConfig().managed) return;
  DeviceState* d = Device(ordinal);
  if (d == nullptr || d->mode != DeviceMode::kManaged) return;
  d->ledger.Release(d->tenant, d->generation, d->slot, bytes);
}

int CurrentOrdinal() {
  using GetDeviceFn = int (*)(CUdevice*);
  static GetDeviceFn get_device = nullptr;  // constant-initialized: no guard needed
  if (get_device == nullptr) {
    get_device = reinterpret_cast<GetDeviceFn>(RealDriverSymbol("cuCtxGetDevice"));
  }
  CUdevice dev = -1;
  if (get_device == nullptr || get_device(&dev) != CUDA_SUCCESS) return -1;
  return dev;
}

bool ManagedView(int ordinal, uint64_t* total, uint64_t* free_bytes, uint64_t* used) {
  if (!GetConfig().managed) return false;
  DeviceState* d = Device(ordinal);
  if (d == nullptr) return false;
  if (d->mode == DeviceMode::kDenied) {
    *total = *free_bytes = *used = 0;
    return true;
  }
  TenantSpec spec;
  if (!d->ledger.ReadTenant(d->tenant, d->generation, &spec, used)) return false;
  *total = spec.memory_limit;
  *free_bytes = d->ledger.Headroom(d->tenant, d->generation);
  return true;
}

bool ManagedViewByUuid(const char* uuid, uint64_t* total, uint64_t* free_bytes, uint64_t* used) {
  if (!GetConfig().managed) return false;
  DeviceState* devices = Devices();
  for (int i = 0; devices != nullptr && i < kMaxDevices; ++i) {
    DeviceState& d = devices[i];
    if (__atomic_load_n(&d.mode, __ATOMIC_ACQUIRE) == DeviceMode::kUnknown) continue;
    if (strcmp(d.uuid, uuid) == 0) return ManagedView(i, total, free_bytes, used);
  }
  // NVML asked before CUDA touched this device: read the ledger directly.
  Ledger ledger;
  if (!ledger.OpenAsTenant(uuid)) return false;
  uint64_t generation = 0;
  const int tenant = ledger.FindTenant(GetConfig().tenant, &generation);
  if (tenant < 0) return false;
  TenantSpec spec;
  if (!ledger.ReadTenant(tenant, generation, &spec, used)) return false;
  *total = spec.memory_limit;
  *free_bytes = ledger.Headroom(tenant, generation);
  return true;
}

bool ComputeTarget(int ordinal, GateTarget* target) {
  if (!GetConfig().managed) return false;
  DeviceState* d = Device(ordinal);
  if (d == nullptr || d->mode != DeviceMode::kManaged) return false;
  *target = GateTarget{&d->ledger, d->tenant, d->generation, &d->held_lease};
  return true;
}

void ResetAccountingAfterFork() {
  // The child holds no driver resources; it claims its own slot on first use.
  DeviceState* devices = Devices();
  for (int i = 0; devices != nullptr && i < kMaxDevices; ++i) {
    DeviceState& d = devices[i];
    d.ledger.Close();
    d.mode = DeviceMode::kUnknown;
    d.slot = -1;
    d.refusal_logged = false;
    d.held_lease.store(0, std::memory_order_relaxed);
  }
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_setup_mu = fresh;
}

}  // namespace gpufrac::runtime
