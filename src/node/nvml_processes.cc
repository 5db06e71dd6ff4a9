#include "node/nvml_processes.h"

#include <dlfcn.h>

#include <algorithm>

#include "node/nvml_process_abi.h"

namespace gpufrac::node {
namespace {

// A GPU with more processes than this is read again with the count NVML asked for.
constexpr unsigned int kInitialCapacity = 64;
constexpr int kAttempts = 4;  // processes may start between NVML's answers

}  // namespace

NvmlProcesses::~NvmlProcesses() {
  if (initialized_ && shutdown_ != nullptr) shutdown_();
  // The library stays loaded: NVML keeps threads of its own in some drivers.
}

Status NvmlProcesses::Open() {
  lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib_ == nullptr) return Status::Error("backstop: cannot load libnvidia-ml.so.1");
  auto init = reinterpret_cast<int (*)()>(dlsym(lib_, "nvmlInit_v2"));
  shutdown_ = reinterpret_cast<int (*)()>(dlsym(lib_, "nvmlShutdown"));
  by_uuid_ =
      reinterpret_cast<int (*)(const char*, void**)>(dlsym(lib_, "nvmlDeviceGetHandleByUUID"));
  utilization_ =
      reinterpret_cast<int (*)(void*, void*)>(dlsym(lib_, "nvmlDeviceGetUtilizationRates"));
  ecc_errors_ = reinterpret_cast<int (*)(void*, int, int, unsigned long long*)>(
      dlsym(lib_, "nvmlDeviceGetTotalEccErrors"));
  memory_ = reinterpret_cast<int (*)(void*, void*)>(dlsym(lib_, "nvmlDeviceGetMemoryInfo"));
  for (const char* name :
       {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"}) {
    processes_ = reinterpret_cast<int (*)(void*, unsigned int*, void*)>(dlsym(lib_, name));
    if (processes_ != nullptr) break;
  }
  if (init == nullptr || shutdown_ == nullptr || by_uuid_ == nullptr || processes_ == nullptr) {
    return Status::Error(
        "backstop: libnvidia-ml.so.1 lacks nvmlDeviceGetComputeRunningProcesses_v2/_v3 (driver "
        "too old); set backstop.mode: off");
  }
  if (init() != NVML_SUCCESS) return Status::Error("backstop: NVML failed to initialize");
  initialized_ = true;
  return Status::Ok();
}

Status NvmlProcesses::Busy(const std::string& uuid, double* busy) {
  void* device = nullptr;
  nvmlUtilization_t u{};
  if (utilization_ == nullptr) return Status::Error("NVML lacks nvmlDeviceGetUtilizationRates");
  if (by_uuid_(uuid.c_str(), &device) != NVML_SUCCESS || utilization_(device, &u) != NVML_SUCCESS) {
    return Status::Error("NVML cannot read the utilization of GPU " + uuid);
  }
  *busy = std::min(u.gpu, 100u) / 100.0;
  return Status::Ok();
}

std::string NvmlProcesses::Problem(const std::string& uuid) {
  void* device = nullptr;
  nvmlMemory_t memory{};
  // A GPU that fell off the bus (NVML_ERROR_GPU_IS_LOST) fails even this simplest query.
  if (by_uuid_(uuid.c_str(), &device) != NVML_SUCCESS ||
      (memory_ != nullptr && memory_(device, &memory) != NVML_SUCCESS)) {
    return "NVML no longer answers for it";
  }
  unsigned long long errors = 0;
  if (ecc_errors_ != nullptr &&
      ecc_errors_(device, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC, &errors) ==
          NVML_SUCCESS &&
      errors > 0) {
    return std::to_string(errors) + " uncorrected ECC errors since the driver loaded";
  }
  return "";
}

Status NvmlProcesses::Read(const std::string& uuid, std::vector<GpuProcess>* out) {
  out->clear();
  void* device = nullptr;
  if (const int r = by_uuid_(uuid.c_str(), &device); r != NVML_SUCCESS) {
    return Status::Error("NVML does not know GPU " + uuid + " (error " + std::to_string(r) + ")");
  }
  std::vector<nvmlProcessInfo_t> infos(kInitialCapacity);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto count = static_cast<unsigned int>(infos.size());
    const int r = processes_(device, &count, infos.data());
    if (r == NVML_ERROR_INSUFFICIENT_SIZE) {
      infos.resize(count + kInitialCapacity);
      continue;
    }
    if (r != NVML_SUCCESS) {
      return Status::Error("NVML cannot list the processes on GPU " + uuid + " (error " +
                           std::to_string(r) + ")");
    }
    for (unsigned int i = 0; i < count && i < infos.size(); ++i) {
      GpuProcess p;
      p.pid = static_cast<pid_t>(infos[i].pid);
      p.used_known = infos[i].usedGpuMemory != kNvmlValueNotAvailable;
      p.used_bytes = p.used_known ? infos[i].usedGpuMemory : 0;
      out->push_back(p);
    }
    return Status::Ok();
  }
  return Status::Error("NVML's process list on GPU " + uuid + " kept growing");
}

}  // namespace gpufrac::node
