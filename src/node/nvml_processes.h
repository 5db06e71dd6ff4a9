// NVML's view of which processes hold memory on a GPU and how busy it is, loaded with dlopen like
// the rest of the agent's NVML use (the simulated NVML in tests). The backstop compares it against
// the ledgers: NVML sees every process on the card, including those that bypassed or never loaded
// the interposer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace gpufrac::node {

struct GpuProcess {
  pid_t pid = 0;
  uint64_t used_bytes = 0;
  bool used_known = true;  // false when NVML cannot attribute memory (e.g. no permission)
};

class NvmlProcesses {
 public:
  NvmlProcesses() = default;
  ~NvmlProcesses();
  NvmlProcesses(const NvmlProcesses&) = delete;
  NvmlProcesses& operator=(const NvmlProcesses&) = delete;

  // Loads libnvidia-ml.so.1 and finds the newest per-process query it offers (_v3, else _v2).
  Status Open();
  // The compute processes on the GPU with this UUID.
  Status Read(const std::string& uuid, std::vector<GpuProcess>* out);
  // The share of NVML's last sample period in which the GPU ran kernels, in [0, 1].
  Status Busy(const std::string& uuid, double* busy);
  // Why the GPU should get no new work ("3 uncorrected ECC errors since the driver loaded", "NVML
  // no longer answers for it"), or "" when healthy. Counters NVML does not support count as 0.
  std::string Problem(const std::string& uuid);

 private:
  void* lib_ = nullptr;
  bool initialized_ = false;
  int (*shutdown_)() = nullptr;
  int (*by_uuid_)(const char*, void**) = nullptr;
  int (*processes_)(void*, unsigned int*, void*) = nullptr;
  int (*utilization_)(void*, void*) = nullptr;
  int (*ecc_errors_)(void*, int, int, unsigned long long*) = nullptr;
  int (*memory_)(void*, void*) = nullptr;
};

}  // namespace gpufrac::node
