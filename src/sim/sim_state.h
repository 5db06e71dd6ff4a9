// The simulated GPUs' shared state: what every process using the simulated driver sees alike.
// One POSIX shm object per simulation ("/gpufrac-sim.<GPUFRAC_SIM_ID>") holds each device's
// identity and memory in use, and one slot per process with what it holds on each device, so that
// a simulated 80 GiB card is full when processes *together* hold 80 GiB — without host RAM behind
// it — and a process's memory comes back when it dies, as with the real driver.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace gpufrac::sim {

constexpr int kMaxSimDevices = 16;
constexpr int kMaxSimProcesses = 1024;
constexpr uint64_t kGranularity = 2ull << 20;  // the VMM/pool allocation granule

struct SimDevice {
  char name[96];
  char uuid[80];  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  uint64_t total_bytes;
  int sm_count;
  std::atomic<uint64_t> used_bytes;
  // The device's one timeline, shared by every process: when the last kernel submitted by anyone
  // finishes (CLOCK_MONOTONIC ns). Kernels run one at a time in submission order.
  std::atomic<uint64_t> timeline_end_ns;
  std::atomic<uint64_t> busy_ns;  // kernel time ever submitted, all processes
};

struct SimProcess {
  std::atomic<int32_t> pid;  // 0 free, -1 being claimed or reclaimed
  uint64_t start_time;
  std::atomic<uint64_t> held[kMaxSimDevices];
  std::atomic<uint64_t> busy_ns[kMaxSimDevices];  // kernel time this process put on each device
  std::atomic<uint64_t> kernels[kMaxSimDevices];
};

struct SimShared {
  uint32_t magic;
  uint32_t device_count;
  SimDevice devices[kMaxSimDevices];
  SimProcess processes[kMaxSimProcesses];
};

// A parsed GPUFRAC_SIM_GPUS entry.
struct DeviceConfig {
  std::string name;
  uint64_t total_bytes = 0;
};

// Parses "H100:80GiB,A100:40GiB". Returns false with a reason in *error.
bool ParseDeviceList(const std::string& text, std::vector<DeviceConfig>* devices,
                     std::string* error);

// Maps CUDA_VISIBLE_DEVICES (indices or UUIDs, as the real driver reads it: parsing stops at the
// first entry that names no device) onto physical device indices.
std::vector<int> VisibleDevices(const char* env, const SimShared& shared);

// This process's view of the shared state.
class SimState {
 public:
  // Opens or creates the shared state from the environment. False with *error on bad config.
  // The driver passes reclaim_previous_image: memory held under this pid by the image that
  // exec'd this one is freed, as the real driver frees it at exec.
  bool Open(std::string* error, bool reclaim_previous_image = false);
  SimShared* shared() const { return shared_; }

  // Charges `bytes` of device memory to this process; false when the card is full.
  bool Allocate(int device, uint64_t bytes);
  void Free(int device, uint64_t bytes);
  // Returns the memory of processes that died to their cards.
  void ReapDead();
  // Credits `kernels` kernels of `busy_ns` total to this process on `device`.
  void AddBusy(int device, uint64_t kernels, uint64_t busy_ns);

 private:
  int ClaimSlot();

  SimShared* shared_ = nullptr;
  int slot_ = -1;
  pid_t slot_pid_ = 0;
};

// The process-wide instance (opened on first use).
SimState& State();
// The context footprint the simulated driver charges for each context (GPUFRAC_SIM_CONTEXT_BYTES).
uint64_t ContextBytes();

}  // namespace gpufrac::sim
