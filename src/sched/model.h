// The scheduler's model of a cluster: nodes with GPUs, workloads (alone or in gangs) asking for
// whole GPUs or fractions, and a tree of queues with quotas. Plain value types; the mutable
// scheduling state lives in ClusterState.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace gpufrac::sched {

using NodeId = int32_t;
using WorkloadId = int32_t;
using QueueId = int32_t;
using GangId = int32_t;
constexpr int32_t kNone = -1;

// GPU compute is accounted in thousandths of a card so that fractions add up exactly.
constexpr int64_t kMilliPerGpu = 1000;

// The resources queues are charged for. GPUs are counted in cards (fractions included), CPU in
// cores and memory in bytes; doubles keep the fair-share arithmetic simple.
enum class Resource { kGpu = 0, kCpu = 1, kMemory = 2 };
constexpr int kResourceCount = 3;
const char* ResourceName(Resource resource);

struct ResourceVec {
  std::array<double, kResourceCount> value{};

  double& operator[](Resource r) { return value[static_cast<int>(r)]; }
  double operator[](Resource r) const { return value[static_cast<int>(r)]; }
  ResourceVec& operator+=(const ResourceVec& other);
  ResourceVec& operator-=(const ResourceVec& other);
  static ResourceVec Unlimited();
};
constexpr double kUnlimited = std::numeric_limits<double>::infinity();

enum class PlacementStrategy { kBinpack, kSpread };

struct NodeSpec {
  std::string name;
  std::string gpu_type;  // all GPUs of a node are alike
  uint64_t gpu_memory_bytes = 0;
  int gpu_count = 0;
  int64_t cpu_milli = 0;
  uint64_t memory_bytes = 0;
  std::map<std::string, std::string> labels;  // topology (rack, zone) and anything else
};

// What a workload asks of GPUs. A fraction is given either as a portion of a card (its memory
// then follows the card's size) or as an amount of memory (its compute share then follows).
enum class GpuRequestKind { kNoGpu, kWhole, kPortion, kMemory };
struct GpuRequest {
  GpuRequestKind kind = GpuRequestKind::kNoGpu;
  int count = 0;              // kWhole
  int64_t portion_milli = 0;  // kPortion: request
  int64_t portion_limit = 0;  // kPortion: limit (enforced on the node, not by the scheduler)
  uint64_t memory_bytes = 0;  // kMemory: request
  uint64_t memory_limit = 0;  // kMemory: limit (enforced on the node, not by the scheduler)
  bool IsFraction() const {
    return kind == GpuRequestKind::kPortion || kind == GpuRequestKind::kMemory;
  }
};

struct WorkloadSpec {
  std::string name;
  QueueId queue = kNone;
  std::string priority_class;
  int priority = 0;
  bool preemptible = true;
  GpuRequest gpu;
  int64_t cpu_milli = 0;
  uint64_t memory_bytes = 0;
  std::string gpu_type;                              // empty: any type
  std::map<std::string, std::string> node_selector;  // labels the node must carry
  PlacementStrategy strategy = PlacementStrategy::kBinpack;
  GangId gang = kNone;
};

struct GangSpec {
  std::string name;
  int min_members = 0;
  std::vector<WorkloadId> members;
  // When set, all members go to nodes with the same value of this label (e.g. one rack).
  std::string topology_key;
};

struct QueueSpec {
  std::string name;
  QueueId parent = kNone;
  ResourceVec deserved;                          // quota guaranteed to the queue
  double over_quota_weight = 1;                  // share of what is left beyond quotas
  ResourceVec limit = ResourceVec::Unlimited();  // never allocated beyond this
  std::vector<QueueId> children;
};

// Built-in priority classes, highest first. Inference and build are not preemptible by default.
struct PriorityClass {
  std::string name;
  int value = 0;
  bool preemptible = true;
};
std::vector<PriorityClass> DefaultPriorityClasses();

}  // namespace gpufrac::sched
