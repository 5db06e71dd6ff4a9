#include "sim/sim_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/quantity.h"
#include "runtime/process_identity.h"

namespace gpufrac::sim {
namespace {

constexpr uint32_t kSimMagic = 0x4D495347;  // "GSIM"
constexpr const char* kDefaultDevices = "H100:80GiB";
constexpr uint64_t kDefaultContextBytes = 512ull << 20;
constexpr int kH100SmCount = 132;

// FNV-1a: a stable, well-spread hash to derive UUIDs from the simulation id.
uint64_t Fnv1a(const std::string& text, uint64_t seed) {
  uint64_t hash = 1469598103934665603ull ^ seed;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

void MakeUuid(const std::string& sim_id, int index, char* out, size_t size) {
  const uint64_t a = Fnv1a(sim_id, static_cast<uint64_t>(index) * 2 + 1);
  const uint64_t b = Fnv1a(sim_id, static_cast<uint64_t>(index) * 2 + 2);
  snprintf(out, size, "GPU-%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
           static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
           static_cast<unsigned>(b >> 48), static_cast<unsigned long long>(b & 0xffffffffffffull));
}

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = getenv(name);
  return (v != nullptr && *v != '\0') ? v : fallback;
}

}  // namespace

bool ParseDeviceList(const std::string& text, std::vector<DeviceConfig>* devices,
                     std::string* error) {
  devices->clear();
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string entry = text.substr(start, end - start);
    const size_t colon = entry.find(':');
    if (entry.empty() || colon == std::string::npos || colon == 0) {
      *error = "GPUFRAC_SIM_GPUS entry '" + entry + "' is not NAME:MEMORY (e.g. H100:80GiB)";
      return false;
    }
    DeviceConfig device;
    device.name = entry.substr(0, colon);
    const std::string memory = entry.substr(colon + 1);
    if (ParseError e = ParseSize(memory.c_str(), &device.total_bytes); e != ParseError::kNone) {
      *error = "GPUFRAC_SIM_GPUS memory '" + memory + "': " + ParseErrorText(e);
      return false;
    }
    devices->push_back(device);
    if (static_cast<int>(devices->size()) > kMaxSimDevices) {
      *error = "GPUFRAC_SIM_GPUS lists more than 16 devices";
      return false;
    }
    start = end + 1;
  }
  return true;
}

std::vector<int> VisibleDevices(const char* env, const SimShared& shared) {
  std::vector<int> visible;
  const int count = static_cast<int>(shared.device_count);
  if (env == nullptr) {
    for (int i = 0; i < count; ++i) visible.push_back(i);
    return visible;
  }
  std::string list(env);
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string entry = list.substr(start, end - start);
    while (!entry.empty() && entry.front() == ' ') entry.erase(0, 1);
    while (!entry.empty() && entry.back() == ' ') entry.pop_back();
    int found = -1;
    if (!entry.empty() && entry.find_first_not_of("0123456789") == std::string::npos) {
      const int index = atoi(entry.c_str());
      if (index < count) found = index;
    } else if (entry.rfind("GPU-", 0) == 0) {
      for (int i = 0; i < count; ++i) {
        if (strncmp(shared.devices[i].uuid, entry.c_str(), entry.size()) == 0) found = i;
      }
    }
    if (found < 0) break;  // the driver ignores everything from the first invalid entry on
    for (int v : visible) {
      if (v == found) return visible;  // a repeated device also ends the list
    }
    visible.push_back(found);
    start = end + 1;
  }
  return visible;
}

bool SimState::Open(std::string* error, bool reclaim_previous_image) {
  const std::string sim_id = EnvOr("GPUFRAC_SIM_ID", "default");
  if (sim_id.find('/') != std::string::npos || sim_id.size() > 200) {
    *error = "GPUFRAC_SIM_ID '" + sim_id + "' must be a short name without '/'";
    return false;
  }
  std::vector<DeviceConfig> devices;
  if (!ParseDeviceList(EnvOr("GPUFRAC_SIM_GPUS", kDefaultDevices), &devices, error)) return false;
  const std::string name = "/gpufrac-sim." + sim_id;
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    *error = "cannot open simulated GPU state " + name + ": " + strerror(errno);
    return false;
  }
  fchmod(fd, 0666);
  flock(fd, LOCK_EX);
  struct stat st;
  if (fstat(fd, &st) != 0 || (static_cast<size_t>(st.st_size) < sizeof(SimShared) &&
                              ftruncate(fd, sizeof(SimShared)) != 0)) {
    *error = "cannot size simulated GPU state " + name;
    close(fd);
    return false;
  }
  void* p = mmap(nullptr, sizeof(SimShared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    *error = "cannot map simulated GPU state " + name;
    close(fd);
    return false;
  }
  auto* shared = static_cast<SimShared*>(p);
  if (shared->magic != kSimMagic) {
    // First process of this simulation: describe the devices. Later processes share them, as
    // processes on one host share its GPUs.
    shared->device_count = static_cast<uint32_t>(devices.size());
    for (size_t i = 0; i < devices.size(); ++i) {
      SimDevice& d = shared->devices[i];
      snprintf(d.name, sizeof d.name, "NVIDIA %s (simulated)", devices[i].name.c_str());
      MakeUuid(sim_id, static_cast<int>(i), d.uuid, sizeof d.uuid);
      d.total_bytes = devices[i].total_bytes;
      d.sm_count = kH100SmCount;
      d.used_bytes.store(0);
    }
    shared->magic = kSimMagic;
  }
  flock(fd, LOCK_UN);
  close(fd);
  shared_ = shared;
  if (reclaim_previous_image) {
    const pid_t pid = getpid();
    const uint64_t start = ProcessStartTime(pid);
    for (SimProcess& slot : shared_->processes) {
      int32_t expected = pid;
      if (slot.start_time != start || !slot.pid.compare_exchange_strong(expected, -1)) continue;
      for (int dev = 0; dev < kMaxSimDevices; ++dev) {
        const uint64_t held = slot.held[dev].exchange(0);
        if (held > 0) shared_->devices[dev].used_bytes.fetch_sub(held);
      }
      slot.pid.store(0, std::memory_order_release);
    }
  }
  return true;
}

int SimState::ClaimSlot() {
  const pid_t pid = getpid();
  if (slot_ >= 0 && slot_pid_ == pid) return slot_;
  // After fork the child gets a slot of its own; it holds nothing yet.
  const uint64_t start = ProcessStartTime(pid);
  for (int i = 0; i < kMaxSimProcesses; ++i) {
    SimProcess& p = shared_->processes[i];
    int32_t expected = 0;
    if (p.pid.load(std::memory_order_relaxed) != 0) continue;
    if (!p.pid.compare_exchange_strong(expected, -1)) continue;
    p.start_time = start;
    for (auto& held : p.held) held.store(0);
    for (auto& busy : p.busy_ns) busy.store(0);
    for (auto& count : p.kernels) count.store(0);
    p.pid.store(pid, std::memory_order_release);
    slot_ = i;
    slot_pid_ = pid;
    return i;
  }
  ReapDead();
  return -1;
}

bool SimState::Allocate(int device, uint64_t bytes) {
  SimDevice& d = shared_->devices[device];
  for (int attempt = 0; attempt < 2; ++attempt) {
    uint64_t used = d.used_bytes.load(std::memory_order_acquire);
    bool fits = true;
    for (;;) {
      if (bytes > d.total_bytes || used > d.total_bytes - bytes) {
        fits = false;
        break;
      }
      if (d.used_bytes.compare_exchange_weak(used, used + bytes)) break;
    }
    if (fits) {
      const int slot = ClaimSlot();
      if (slot >= 0) shared_->processes[slot].held[device].fetch_add(bytes);
      return true;
    }
    ReapDead();  // the real driver has already taken back what dead processes held
  }
  return false;
}

void SimState::Free(int device, uint64_t bytes) {
  shared_->devices[device].used_bytes.fetch_sub(bytes);
  const int slot = ClaimSlot();
  if (slot >= 0) shared_->processes[slot].held[device].fetch_sub(bytes);
}

void SimState::AddBusy(int device, uint64_t kernels, uint64_t busy_ns) {
  shared_->devices[device].busy_ns.fetch_add(busy_ns, std::memory_order_relaxed);
  const int slot = ClaimSlot();
  if (slot < 0) return;
  shared_->processes[slot].busy_ns[device].fetch_add(busy_ns, std::memory_order_relaxed);
  shared_->processes[slot].kernels[device].fetch_add(kernels, std::memory_order_relaxed);
}

void SimState::ReapDead() {
  for (int i = 0; i < kMaxSimProcesses; ++i) {
    SimProcess& p = shared_->processes[i];
    int32_t pid = p.pid.load(std::memory_order_acquire);
    if (pid <= 0 || ProcessIsAlive(pid, p.start_time)) continue;
    if (!p.pid.compare_exchange_strong(pid, -1)) continue;
    for (int dev = 0; dev < kMaxSimDevices; ++dev) {
      const uint64_t held = p.held[dev].exchange(0);
      if (held > 0) shared_->devices[dev].used_bytes.fetch_sub(held);
    }
    p.pid.store(0, std::memory_order_release);
  }
}

SimState& State() {
  static SimState state;
  return state;
}

uint64_t ContextBytes() {
  static const uint64_t bytes = [] {
    const char* v = getenv("GPUFRAC_SIM_CONTEXT_BYTES");
    uint64_t parsed = 0;
    if (v != nullptr && strcmp(v, "0") == 0) return uint64_t{0};
    return (v != nullptr && ParseSize(v, &parsed) == ParseError::kNone) ? parsed
                                                                        : kDefaultContextBytes;
  }();
  return bytes;
}

}  // namespace gpufrac::sim
