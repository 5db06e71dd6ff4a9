// Scenario files: a cluster (node groups), a queue tree, priority classes, scheduler settings, and
// a workload given as a trace (explicit arrivals and durations) and/or a generator (Poisson
// arrivals per class). Scenario tests add an `expect:` section. Loading validates everything and
// refuses bad input with one line naming the key's path and the reason.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "sched/cluster_state.h"
#include "sched/scheduler.h"

namespace gpufrac::sched {

// One workload of the trace. Durations < 0 run until the end of the simulation.
struct TraceEntry {
  WorkloadSpec spec;  // queue and gang ids refer to the scenario's queues and gangs
  double arrival = 0;
  double duration = -1;
  std::string bound_node;       // starts bound there (scenario tests)
  std::vector<int> bound_gpus;  // indexes of GPUs on bound_node
};

struct GangEntry {
  std::string name;
  int min_members = 0;
  std::string topology_key;  // all members within one value of this node label
};

// A class of generated workloads: Poisson arrivals, exponential durations, a shape picked
// uniformly from `shapes`.
struct GeneratorClass {
  std::string name;
  WorkloadSpec spec;               // queue, priority, cpu, memory, selectors
  std::vector<GpuRequest> shapes;  // at least one
  double rate = 0;                 // arrivals per second
  double mean_duration = 0;        // seconds
  int gang_size = 0;               // > 0: each arrival is a gang of this many members
  std::string gang_topology;       // node label the gang's members must share (e.g. rack)
};

struct SimSettings {
  double duration = 0;          // simulated seconds; 0: until the trace is done
  double cycle_interval = 10;   // seconds between scheduling cycles
  double sample_interval = 60;  // seconds between metric samples
  double warmup = 0;            // samples before this are left out of steady-state figures
  uint64_t seed = 1;
};

// What a scenario test expects after `cycles` scheduling cycles with every trace entry present.
struct Expectations {
  bool present = false;
  int cycles = 1;
  std::map<std::string, std::string> bound;  // workload -> "node" or "node/gpu-index"
  std::vector<std::string> pending;
  std::vector<std::string> evicted;                    // evicted in any cycle
  std::map<std::string, std::string> reason_contains;  // workload -> text in its last reason
};

struct Scenario {
  std::string name;
  std::string description;
  SchedulerConfig scheduler;
  SimSettings sim;
  std::vector<PriorityClass> priority_classes;
  std::vector<NodeSpec> nodes;
  std::vector<QueueSpec> queues;  // parents before children; ids are indexes
  std::vector<GangEntry> gangs;   // ids are indexes
  std::vector<TraceEntry> trace;
  std::vector<GeneratorClass> generator;
  Expectations expect;
};

// Parses a scenario; `base_dir` resolves relative file names. Errors read
// "<file>: <key path>: <reason>".
Status ParseScenario(const std::string& text, const std::string& source_name, Scenario* out);
Status LoadScenarioFile(const std::string& path, Scenario* out);

// A cluster state with the scenario's nodes and queues (ids equal to the scenario's indexes) and
// its gangs; no workloads.
ClusterState BuildClusterState(const Scenario& scenario);

// Adds a trace entry as a pending workload (binding it when it starts bound); false with *error
// when the initial binding is impossible.
bool AddTraceEntry(ClusterState* state, const TraceEntry& entry, WorkloadId* id,
                   std::string* error);

}  // namespace gpufrac::sched
