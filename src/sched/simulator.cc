#include "sched/simulator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>
#include <set>
#include <tuple>

#include "sched/invariants.h"
#include "sched/packing_metrics.h"

namespace gpufrac::sched {
namespace {

// A scenario without an end (no sim.duration) stops after this many cycles at the latest.
constexpr int kMaxCycles = 5'000'000;

// Deterministic across platforms, unlike the standard distributions.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double Exponential(double mean) { return -mean * std::log(1.0 - Uniform()); }
  size_t Index(size_t n) { return static_cast<size_t>(Uniform() * static_cast<double>(n)); }

 private:
  uint64_t state_;
};

struct Runtime {
  double arrival = 0;
  double remaining = -1;  // < 0: runs until the end
  double started = 0;
  double first_start = -1;
  int epoch = 0;  // bumped at eviction so that stale completions are ignored
  bool told_unschedulable = false;
};

struct Completion {
  double time;
  WorkloadId id;
  int epoch;
  bool operator>(const Completion& o) const { return std::tie(time, id) > std::tie(o.time, o.id); }
};

WaitStats Summarize(std::vector<double> waits, int never_started) {
  WaitStats s;
  s.never_started = never_started;
  s.count = static_cast<int>(waits.size());
  if (waits.empty()) return s;
  std::sort(waits.begin(), waits.end());
  double sum = 0;
  for (double w : waits) sum += w;
  s.mean = sum / static_cast<double>(waits.size());
  auto pct = [&](double p) {
    return waits[static_cast<size_t>(std::min<double>(waits.size() - 1, p * waits.size()))];
  };
  s.p50 = pct(0.5);
  s.p95 = pct(0.95);
  s.max = waits.back();
  return s;
}

}  // namespace

std::vector<TraceEntry> ExpandWorkload(const Scenario& scenario, std::vector<GangEntry>* gangs) {
  std::vector<TraceEntry> out = scenario.trace;
  Random rng(scenario.sim.seed);
  for (const GeneratorClass& c : scenario.generator) {
    if (c.rate <= 0) continue;
    int n = 0;
    for (double t = rng.Exponential(1 / c.rate); t < scenario.sim.duration;
         t += rng.Exponential(1 / c.rate)) {
      TraceEntry e;
      e.spec = c.spec;
      e.spec.gpu = c.shapes[rng.Index(c.shapes.size())];
      e.arrival = t;
      e.duration = rng.Exponential(c.mean_duration);
      const std::string name = c.name + "-" + std::to_string(n++);
      if (c.gang_size <= 0) {
        e.spec.name = name;
        out.push_back(std::move(e));
        continue;
      }
      e.spec.gang = static_cast<GangId>(gangs->size());
      gangs->push_back({name, c.gang_size, c.gang_topology});
      for (int m = 0; m < c.gang_size; ++m) {
        TraceEntry member = e;
        member.spec.name = name + "-m" + std::to_string(m);
        out.push_back(std::move(member));
      }
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const TraceEntry& a, const TraceEntry& b) { return a.arrival < b.arrival; });
  return out;
}

Status RunSimulation(const Scenario& input, SimReport* report, const DecisionSink& sink) {
  Scenario scenario = input;
  const std::vector<TraceEntry> entries = ExpandWorkload(input, &scenario.gangs);
  ClusterState state = BuildClusterState(scenario);
  const Scheduler scheduler(scenario.scheduler);
  const SimSettings& sim = scenario.sim;
  *report = SimReport{};
  report->scenario = scenario.name;
  report->nodes = state.node_count();
  report->gpus = state.gpu_count();
  std::vector<QueueId> leaves;
  for (QueueId q = 0; q < state.queue_count(); ++q) {
    if (!state.queue(q).IsLeaf()) continue;
    leaves.push_back(q);
    report->leaf_queues.push_back(state.queue(q).spec.name);
  }

  std::vector<Runtime> runtime;
  std::priority_queue<Completion, std::vector<Completion>, std::greater<>> completions;
  std::vector<double> cycle_ms;
  std::map<std::string, std::vector<double>> waits_queue, waits_priority, waits_queue_priority;
  size_t next_entry = 0;
  double next_sample = 0;
  const double end = sim.duration > 0 ? sim.duration : std::numeric_limits<double>::infinity();
  double steady_dev = 0, steady_dev_abs = 0, steady_alloc = 0, steady_stranded = 0, steady_ffd = 0;
  int steady_samples = 0;

  for (double t = 0; t <= end;) {
    // Completions due by now free their resources first, then arrivals join.
    while (!completions.empty() && completions.top().time <= t) {
      const Completion c = completions.top();
      completions.pop();
      if (runtime[c.id].epoch != c.epoch) continue;
      state.RemoveWorkload(c.id);
      ++report->completed;
    }
    while (next_entry < entries.size() && entries[next_entry].arrival <= t) {
      const TraceEntry& e = entries[next_entry++];
      WorkloadId id = kNone;
      std::string error;
      if (!AddTraceEntry(&state, e, &id, &error)) return Status::Error(error);
      runtime.resize(id + 1);
      runtime[id].arrival = e.arrival;
      runtime[id].remaining = e.duration;
      ++report->arrivals;
      if (state.workload(id).status == WorkloadStatus::kBound) {
        runtime[id].started = runtime[id].first_start = t;
        if (e.duration >= 0) completions.push({t + e.duration, id, 0});
      }
    }

    const CycleResult r = scheduler.RunCycle(state);
    ++report->cycles;
    report->simulated_seconds = t;
    cycle_ms.push_back(r.stats.total_seconds * 1000);
    if (!r.invariants.ok()) {
      if (report->invariant_failures++ == 0)
        report->first_invariant_failure = r.invariants.message();
    }
    std::vector<WorkloadId> bound_now;
    for (const Decision& d : r.decisions) {
      if (sink) sink(t, state, d);
      Runtime& rt = runtime[d.workload];
      switch (d.kind) {
        case DecisionKind::kBind:
        case DecisionKind::kNominate:
          ++report->binds;
          rt.started = t;
          bound_now.push_back(d.workload);
          if (rt.remaining >= 0) completions.push({t + rt.remaining, d.workload, rt.epoch});
          break;
        case DecisionKind::kEvict:
          ++report->evictions_by_action[ActionName(d.action)];
          // Work done so far is kept (checkpointed jobs); the rest runs after rescheduling.
          if (rt.remaining >= 0) rt.remaining = std::max(0.0, rt.remaining - (t - rt.started));
          ++rt.epoch;
          break;
        case DecisionKind::kUnschedulable:
          ++report->unschedulable_decisions;
          if (!rt.told_unschedulable) ++report->unschedulable_workloads;
          rt.told_unschedulable = true;
          break;
      }
    }
    // A workload has started once it is still bound when the cycle's decisions are done; one
    // bound and evicted in the same cycle never ran, and is still waiting.
    for (WorkloadId id : bound_now) {
      Runtime& rt = runtime[id];
      if (rt.first_start >= 0 || state.workload(id).status != WorkloadStatus::kBound) continue;
      rt.first_start = t;
      const WorkloadSpec& spec = state.workload(id).spec;
      const std::string& queue = state.queue(spec.queue).spec.name;
      waits_queue[queue].push_back(t - rt.arrival);
      waits_priority[spec.priority_class].push_back(t - rt.arrival);
      waits_queue_priority[queue + "/" + spec.priority_class].push_back(t - rt.arrival);
    }

    if (t >= next_sample) {
      SimSample s;
      s.time = t;
      int64_t free_milli = 0;
      for (const GpuPool& p : state.pools()) {
        free_milli += p.free_milli_total;
        for (const auto& entry : p.nodes_by_free) s.whole_free_gpus += entry.first;
        s.partial_gpus += static_cast<int>(p.partial_gpus.size());
      }
      const double total_milli = static_cast<double>(state.gpu_count()) * kMilliPerGpu;
      s.gpu_allocated = total_milli > 0 ? 1 - static_cast<double>(free_milli) / total_milli : 0;
      s.stranded = StrandedShare(state);
      s.ffd_gpus_ratio = FfdRatio(state);
      s.pending = state.pending_total();
      s.running = state.bound_total();
      double dev = 0, dev_abs = 0;
      for (QueueId q : leaves) {
        const double alloc = state.queue(q).allocated[Resource::kGpu];
        const double fair = r.fair_share.share[q][Resource::kGpu];
        s.queue_gpu.push_back(alloc);
        s.queue_fair_gpu.push_back(fair);
        // Only queues that want at least their share can be held to it.
        if (fair <= 0 || r.fair_share.demand[q][Resource::kGpu] + 1e-9 < fair) continue;
        dev = std::max(dev, std::abs(alloc - fair) / fair);
        dev_abs = std::max(dev_abs, std::abs(alloc - fair) / std::max(1, state.gpu_count()));
      }
      if (t >= sim.warmup) {
        ++steady_samples;
        steady_dev += dev;
        steady_dev_abs += dev_abs;
        steady_alloc += s.gpu_allocated;
        steady_stranded += s.stranded;
        steady_ffd += s.ffd_gpus_ratio;
        report->max_stranded = std::max(report->max_stranded, s.stranded);
      }
      report->samples.push_back(std::move(s));
      next_sample = t + sim.sample_interval;
    }

    // Next cycle; idle stretches jump straight to the next event.
    double next = t + sim.cycle_interval;
    if (state.pending_total() == 0) {
      double event = std::numeric_limits<double>::infinity();
      if (next_entry < entries.size()) event = entries[next_entry].arrival;
      if (!completions.empty()) event = std::min(event, completions.top().time);
      if (std::isinf(event) && std::isinf(end)) break;  // trace done, nothing will change
      if (event > next) next = t + std::ceil((event - t) / sim.cycle_interval) * sim.cycle_interval;
      next = std::min(next, std::max(next_sample, t + sim.cycle_interval));
    }
    if (std::isinf(end) && next_entry >= entries.size() && completions.empty() &&
        state.pending_total() > 0 && r.stats.binds == 0 && r.stats.evictions == 0) {
      break;  // nothing left can change: the rest stays pending
    }
    if (report->cycles >= kMaxCycles) break;
    t = next;
  }

  report->pending_at_end = state.pending_total();
  for (auto& [queue, waits] : waits_queue) report->waits_by_queue[queue] = Summarize(waits, 0);
  for (auto& [prio, waits] : waits_priority) report->waits_by_priority[prio] = Summarize(waits, 0);
  for (auto& [key, waits] : waits_queue_priority) {
    report->waits_by_queue_priority[key] = Summarize(waits, 0);
  }
  for (QueueId q : leaves) {
    for (const PendingKey& key : state.pending(q)) {
      if (runtime[key.id].first_start >= 0) continue;
      ++report->waits_by_queue[state.queue(q).spec.name].never_started;
      const std::string& prio = state.workload(key.id).spec.priority_class;
      ++report->waits_by_priority[prio].never_started;
      ++report->waits_by_queue_priority[state.queue(q).spec.name + "/" + prio].never_started;
    }
  }
  if (steady_samples > 0) {
    report->fair_share_deviation = steady_dev / steady_samples;
    report->fair_share_deviation_abs = steady_dev_abs / steady_samples;
    report->mean_gpu_allocated = steady_alloc / steady_samples;
    report->mean_stranded = steady_stranded / steady_samples;
    report->mean_ffd_gpus_ratio = steady_ffd / steady_samples;
  }
  if (!cycle_ms.empty()) {
    std::sort(cycle_ms.begin(), cycle_ms.end());
    double sum = 0;
    for (double c : cycle_ms) sum += c;
    report->cycle_ms_mean = sum / static_cast<double>(cycle_ms.size());
    report->cycle_ms_p50 = cycle_ms[cycle_ms.size() / 2];
    report->cycle_ms_p99 = cycle_ms[std::min(cycle_ms.size() - 1, cycle_ms.size() * 99 / 100)];
    report->cycle_ms_max = cycle_ms.back();
  }
  return Status::Ok();
}

}  // namespace gpufrac::sched
