// Benchmarks of the scheduler core at cluster scale (Google Benchmark). Each builds a synthetic
// cluster of 8-GPU nodes, fills it with running fractional workloads, adds pending ones, and
// times whole cycles (allocate, consolidate, reclaim, preempt) on a copy of that state.
//
//   FullCycle/<nodes>/<pending>/<variant>: a cluster ~90% allocated, 10 queues, a mix of
//     fractions and whole GPUs pending; most pending work cannot fit, as in a busy cluster.
//     variant=1 adds rack selectors and rack-local gangs to the pending work; variant=2 runs
//     only half of the queues, so that the other half reclaim every cycle.
//   PlacementRate/<nodes>/<pending>: an empty cluster and pending fractions that all fit;
//     items_per_second is placement decisions per second.
//   MemoryAtScale: 10,000 nodes and 150,000 workloads; reports the process's peak RSS.
//   ChurnScenario: runs examples/sched/fractional-churn.yaml and reports stranded capacity,
//     GPUs in use against a first-fit-decreasing packing, and fair-share deviation.
//   PackingVsFfd: fractional churn driven on the core directly (1,000 GPUs, 300 rounds), with
//     stranded capacity and the FFD reference computed every round.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>

#include "sched/cluster_state.h"
#include "sched/packing_metrics.h"
#include "sched/placement.h"
#include "sched/scenario.h"
#include "sched/scheduler.h"
#include "sched/simulator.h"

namespace gpufrac::sched {
namespace {

constexpr uint64_t kGiB = 1ull << 30;
constexpr int kGpusPerNode = 8;
constexpr int kQueues = 10;
constexpr double kFillTarget = 0.9;
constexpr double kMemoryFill = 0.7;
constexpr int kNodesPerRack = 32;
constexpr int kGangSize = 4;

WorkloadSpec RandomWorkload(std::mt19937_64& rng, int index, QueueId queue, bool mostly_fractions) {
  static const int64_t kPortions[] = {125, 250, 500, 750};
  WorkloadSpec w;
  w.name = "w" + std::to_string(index);
  w.queue = queue;
  const int priority_pick = static_cast<int>(rng() % 10);
  w.priority = priority_pick == 0 ? 125 : priority_pick < 3 ? 100 : 50;
  w.priority_class = priority_pick == 0 ? "inference" : priority_pick < 3 ? "build" : "training";
  w.preemptible = w.priority == 50;
  w.cpu_milli = 1000;
  w.memory_bytes = 4 * kGiB;
  if (mostly_fractions || rng() % 10 != 0) {
    w.gpu.kind = GpuRequestKind::kPortion;
    w.gpu.portion_milli = kPortions[rng() % 4];
    w.gpu.portion_limit = w.gpu.portion_milli;
  } else {
    w.gpu.kind = GpuRequestKind::kWhole;
    w.gpu.count = 1 + static_cast<int>(rng() % 2);
  }
  return w;
}

// A cluster of `nodes` 8-GPU nodes (32 per rack), filled to about `fill` of its GPU compute
// with running workloads placed by the scheduler's own placement, plus `pending` waiting
// workloads. With `constrained`, a fifth of the pending workloads select a rack and one in 20
// arrivals is a 4-member gang kept within one rack.
ClusterState BuildCluster(int nodes, int pending, double fill, bool mostly_fractions,
                          bool constrained = false, bool imbalanced = false) {
  std::mt19937_64 rng(42);
  ClusterState s;
  for (int i = 0; i < nodes; ++i) {
    NodeSpec n;
    n.name = "node-" + std::to_string(i);
    n.gpu_type = "H100";
    n.gpu_memory_bytes = 80 * kGiB;
    n.gpu_count = kGpusPerNode;
    n.cpu_milli = 224000;
    n.memory_bytes = 2048 * kGiB;
    n.labels["rack"] = "rack-" + std::to_string(i / kNodesPerRack);
    s.AddNode(n);
  }
  const double total_gpus = static_cast<double>(nodes) * kGpusPerNode;
  for (int q = 0; q < kQueues; ++q) {
    QueueSpec spec;
    spec.name = "queue-" + std::to_string(q);
    spec.deserved[Resource::kGpu] = total_gpus / kQueues;
    spec.over_quota_weight = 1 + q % 3;
    s.AddQueue(spec);
  }
  int index = 0;
  double placed = 0;
  while (placed < fill * total_gpus) {
    // Imbalanced: only the first half of the queues run anything, so the other half sit below
    // their fair share and reclaim has work in every cycle.
    const QueueId queue = imbalanced ? index % (kQueues / 2) : index % kQueues;
    const WorkloadId id = s.AddWorkload(RandomWorkload(rng, index, queue, true));
    ++index;
    std::string reason;
    std::optional<Placement> p = FindPlacement(s, id, {}, &reason);
    if (!p) {
      s.RemoveWorkload(id);
      break;
    }
    s.Bind(id, *p);
    placed += s.workload(id).gpu_units;
  }
  s.Commit();
  const int racks = std::max(1, nodes / kNodesPerRack);
  for (int i = 0; i < pending; ++i, ++index) {
    WorkloadSpec w = RandomWorkload(rng, index, index % kQueues, mostly_fractions);
    if (constrained && rng() % 5 == 0) {
      w.node_selector["rack"] = "rack-" + std::to_string(rng() % racks);
    }
    if (constrained && rng() % 20 == 0) {
      const GangId g = s.AddGang(w.name, kGangSize, "rack");
      w.gang = g;
      w.node_selector.clear();
      for (int m = 0; m < kGangSize; ++m) {
        WorkloadSpec member = w;
        member.name = w.name + "-m" + std::to_string(m);
        s.AddWorkload(member);
      }
      i += kGangSize - 1;
      continue;
    }
    s.AddWorkload(w);
  }
  return s;
}

void BM_FullCycle(benchmark::State& bench) {
  const int nodes = static_cast<int>(bench.range(0));
  const int pending = static_cast<int>(bench.range(1));
  const bool constrained = bench.range(2) == 1;
  const bool imbalanced = bench.range(2) == 2;
  const ClusterState base =
      BuildCluster(nodes, pending, kFillTarget, false, constrained, imbalanced);
  int64_t evictions = 0;
  const Scheduler scheduler(SchedulerConfig{});
  int64_t decisions = 0;
  int64_t binds = 0;
  for (auto _ : bench) {
    bench.PauseTiming();
    ClusterState state = base;
    bench.ResumeTiming();
    const CycleResult r = scheduler.RunCycle(state);
    benchmark::DoNotOptimize(r.decisions.data());
    decisions += static_cast<int64_t>(r.decisions.size());
    binds += r.stats.binds;
    evictions += r.stats.evictions;
    bench.PauseTiming();
    state = ClusterState{};  // free outside the timed region
    bench.ResumeTiming();
  }
  bench.counters["gpus"] = static_cast<double>(nodes) * kGpusPerNode;
  bench.counters["binds_per_cycle"] = static_cast<double>(binds) / bench.iterations();
  bench.counters["decisions_per_cycle"] = static_cast<double>(decisions) / bench.iterations();
  bench.counters["evictions_per_cycle"] = static_cast<double>(evictions) / bench.iterations();
}

void BM_PlacementRate(benchmark::State& bench) {
  const int nodes = static_cast<int>(bench.range(0));
  const int pending = static_cast<int>(bench.range(1));
  const ClusterState base = BuildCluster(nodes, pending, 0, true);
  const Scheduler scheduler(SchedulerConfig{});
  int64_t binds = 0;
  for (auto _ : bench) {
    bench.PauseTiming();
    ClusterState state = base;
    bench.ResumeTiming();
    const CycleResult r = scheduler.RunCycle(state);
    binds += r.stats.binds;
    bench.PauseTiming();
    state = ClusterState{};
    bench.ResumeTiming();
  }
  bench.SetItemsProcessed(binds);
  bench.counters["gpus"] = static_cast<double>(nodes) * kGpusPerNode;
}

double PeakRssMib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

void BM_MemoryAtScale(benchmark::State& bench) {
  constexpr int kNodes = 10000;
  constexpr int kPods = 150000;
  for (auto _ : bench) {
    // 70% of the 80,000 GPUs run fractions (about 140,000 pods); the rest of the 150,000 pods
    // are pending, of mixed shapes.
    ClusterState state = BuildCluster(kNodes, 0, kMemoryFill, true);
    std::mt19937_64 rng(7);
    const int running = static_cast<int>(state.bound_total());
    for (int i = running; i < kPods; ++i) {
      state.AddWorkload(RandomWorkload(rng, i, i % kQueues, false));
    }
    const CycleResult r = Scheduler(SchedulerConfig{}).RunCycle(state);
    bench.counters["bound"] = static_cast<double>(state.bound_total());
    bench.counters["pending"] = static_cast<double>(state.pending_total());
    bench.counters["cycle_s"] = r.stats.total_seconds;
  }
  bench.counters["peak_rss_mib"] = PeakRssMib();
}

void BM_ChurnScenario(benchmark::State& bench) {
  Scenario scenario;
  const Status st = LoadScenarioFile(
      std::string(GPUFRAC_SOURCE_DIR) + "/examples/sched/fractional-churn.yaml", &scenario);
  if (!st.ok()) {
    bench.SkipWithError(st.message().c_str());
    return;
  }
  SimReport report;
  for (auto _ : bench) {
    const Status run = RunSimulation(scenario, &report);
    if (!run.ok()) bench.SkipWithError(run.message().c_str());
  }
  bench.counters["stranded_mean_pct"] = report.mean_stranded * 100;
  bench.counters["stranded_max_pct"] = report.max_stranded * 100;
  bench.counters["gpus_in_use_over_ffd"] = report.mean_ffd_gpus_ratio;
  bench.counters["fair_share_dev_pct"] = report.fair_share_deviation * 100;
  bench.counters["cycle_ms_p99"] = report.cycle_ms_p99;
}

// Fractional churn run directly on the core: every round a share of the running fractions
// finishes, new ones arrive (keeping work pending), and a cycle runs. After a warm-up, each round
// measures stranded capacity and GPUs in use against a first-fit-decreasing repacking.
void BM_PackingVsFfd(benchmark::State& bench) {
  constexpr int kNodes = 125;
  constexpr int kRounds = 300;
  constexpr int kWarmup = 50;
  constexpr int kTargetPending = 200;
  constexpr int kFinishOneIn = 20;  // about 5% of running work finishes per round
  double stranded_sum = 0, stranded_max = 0, ffd_sum = 0, alloc_sum = 0;
  int samples = 0;
  for (auto _ : bench) {
    ClusterState s = BuildCluster(kNodes, 0, 0, true);
    std::mt19937_64 rng(99);
    const Scheduler scheduler(SchedulerConfig{});
    int next = 0;
    for (int round = 0; round < kRounds; ++round) {
      for (WorkloadId id = 0; id < s.workload_count(); ++id) {
        if (s.workload(id).status == WorkloadStatus::kBound && rng() % kFinishOneIn == 0) {
          s.RemoveWorkload(id);
        }
      }
      while (s.pending_total() < static_cast<size_t>(kTargetPending)) {
        WorkloadSpec w = RandomWorkload(rng, next, next % kQueues, true);
        if (rng() % 3 == 0) {  // a third ask for memory rather than a portion
          w.gpu.kind = GpuRequestKind::kMemory;
          w.gpu.memory_bytes = (10ull << (rng() % 3)) * kGiB;  // 10, 20 or 40 GiB
        }
        w.name = "c" + std::to_string(next++);
        s.AddWorkload(w);
      }
      scheduler.RunCycle(s);
      if (round < kWarmup) continue;
      const double stranded = StrandedShare(s);
      stranded_sum += stranded;
      stranded_max = std::max(stranded_max, stranded);
      ffd_sum += FfdRatio(s);
      double free_milli = 0;
      for (const GpuPool& p : s.pools()) free_milli += static_cast<double>(p.free_milli_total);
      alloc_sum += 1 - free_milli / (static_cast<double>(s.gpu_count()) * kMilliPerGpu);
      ++samples;
    }
  }
  bench.counters["stranded_mean_pct"] = 100 * stranded_sum / samples;
  bench.counters["stranded_max_pct"] = 100 * stranded_max;
  bench.counters["gpus_in_use_over_ffd"] = ffd_sum / samples;
  bench.counters["gpu_allocated_pct"] = 100 * alloc_sum / samples;
}

BENCHMARK(BM_FullCycle)
    ->ArgNames({"nodes", "pending", "variant"})
    ->Args({125, 10000, 0})
    ->Args({500, 10000, 0})
    ->Args({1000, 10000, 0})
    ->Args({1250, 1000, 0})
    ->Args({1250, 10000, 0})
    ->Args({1250, 100000, 0})
    ->Args({5000, 10000, 0})
    ->Args({1000, 10000, 1})
    ->Args({1250, 100000, 1})
    ->Args({1000, 10000, 2})
    ->Args({1250, 100000, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_PlacementRate)
    ->ArgNames({"nodes", "pending"})
    ->Args({5000, 20000})
    ->Args({1000, 4000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_MemoryAtScale)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK(BM_ChurnScenario)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_PackingVsFfd)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace gpufrac::sched

BENCHMARK_MAIN();
