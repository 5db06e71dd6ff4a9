// Randomized property tests: many generated clusters, queue trees and workloads (fractions,
// memory requests, whole GPUs, gangs, selectors, priorities), with completions and arrivals
// between cycles. After every cycle the invariants must hold, every pending workload must have
// a reason, and a rolled-back transaction must leave the state exactly as it was.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sched/invariants.h"
#include "sched/placement.h"
#include "sched/scheduler.h"
#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

using testing::kGiB;

class RandomCluster {
 public:
  explicit RandomCluster(uint64_t seed) : rng_(seed) {}

  ClusterState Build() {
    ClusterState s;
    const int nodes = Uniform(1, 12);
    for (int i = 0; i < nodes; ++i) {
      NodeSpec n = testing::Node("n" + std::to_string(i), Uniform(0, 8),
                                 Coin() ? 80 * kGiB : 40 * kGiB, Coin() ? "H100" : "A100");
      n.cpu_milli = Uniform(8, 64) * 1000;
      n.memory_bytes = static_cast<uint64_t>(Uniform(16, 256)) * kGiB;
      n.labels["rack"] = "r" + std::to_string(Uniform(0, 2));
      s.AddNode(n);
    }
    const int parents = Uniform(1, 3);
    for (int p = 0; p < parents; ++p) {
      QueueSpec parent = testing::Queue("p" + std::to_string(p), Uniform(0, 8), Uniform(0, 3));
      if (Coin()) parent.limit[Resource::kGpu] = Uniform(4, 40);
      const QueueId pid = s.AddQueue(parent);
      const int children = Uniform(1, 3);
      for (int c = 0; c < children; ++c) {
        QueueSpec child = testing::Queue("p" + std::to_string(p) + "c" + std::to_string(c),
                                         Uniform(0, 4), Uniform(0, 3), pid);
        if (Coin()) child.limit[Resource::kGpu] = Uniform(4, 20);
        child.limit[Resource::kGpu] =
            std::max(child.limit[Resource::kGpu], child.deserved[Resource::kGpu]);
        leaves_.push_back(s.AddQueue(child));
      }
    }
    return s;
  }

  void AddWorkloads(ClusterState& s, int count) {
    for (int i = 0; i < count; ++i) {
      const std::string name = "w" + std::to_string(next_++);
      const QueueId q = leaves_[Uniform(0, static_cast<int>(leaves_.size()) - 1)];
      const int priority = std::vector<int>{50, 100, 125}[Uniform(0, 2)];
      WorkloadSpec w = testing::Fraction(name, q, 0.5, priority, Uniform(0, 3) > 0);
      w.cpu_milli = Uniform(0, 8) * 500;
      w.memory_bytes = static_cast<uint64_t>(Uniform(0, 16)) * kGiB;
      switch (Uniform(0, 3)) {
        case 0:
          w.gpu.portion_milli = std::vector<int>{100, 250, 333, 500, 750}[Uniform(0, 4)];
          break;
        case 1:
          w.gpu.kind = GpuRequestKind::kMemory;
          w.gpu.memory_bytes = static_cast<uint64_t>(Uniform(1, 80)) * kGiB;
          break;
        case 2:
          w.gpu.kind = GpuRequestKind::kWhole;
          w.gpu.count = Uniform(1, 4);
          break;
        default:
          w.gpu.kind = GpuRequestKind::kNoGpu;
          break;
      }
      if (Uniform(0, 5) == 0) w.node_selector["rack"] = "r" + std::to_string(Uniform(0, 2));
      if (Uniform(0, 5) == 0) w.gpu_type = Coin() ? "H100" : "A100";
      if (Uniform(0, 7) == 0) w.strategy = PlacementStrategy::kSpread;
      if (Uniform(0, 6) == 0) {
        const int members = Uniform(2, 4);
        const GangId g = s.AddGang("g-" + name, Uniform(1, members), Coin() ? "rack" : "");
        for (int m = 0; m < members; ++m) {
          WorkloadSpec member = w;
          member.name = name + "-m" + std::to_string(m);
          member.gang = g;
          s.AddWorkload(member);
        }
        continue;
      }
      s.AddWorkload(w);
    }
  }

  // Completes a random share of the bound workloads (whole gangs at once).
  void CompleteSome(ClusterState& s) {
    for (WorkloadId id = 0; id < s.workload_count(); ++id) {
      const WorkloadState& w = s.workload(id);
      if (w.status != WorkloadStatus::kBound || Uniform(0, 3) != 0) continue;
      if (w.spec.gang == kNone) {
        s.RemoveWorkload(id);
        continue;
      }
      for (WorkloadId m : s.gang(w.spec.gang).members) s.RemoveWorkload(m);
    }
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Coin() { return Uniform(0, 1) == 1; }

 private:
  std::mt19937_64 rng_;
  std::vector<QueueId> leaves_;
  int next_ = 0;
};

// A fingerprint of everything the scheduler reads, to compare before and after a rollback.
std::string Fingerprint(const ClusterState& s) {
  std::string out;
  for (WorkloadId id = 0; id < s.workload_count(); ++id) {
    out += std::to_string(static_cast<int>(s.workload(id).status)) + testing::Where(s, id) + ";";
  }
  for (int32_t g = 0; g < s.gpu_count(); ++g) out += std::to_string(s.gpu(g).free_milli) + ",";
  for (QueueId q = 0; q < s.queue_count(); ++q) {
    // Rounded: adding and removing the same fractions may leave -1e-17 instead of 0.
    out += std::to_string(std::round(s.queue(q).allocated[Resource::kGpu] * 1e6) / 1e6 + 0.0) + "|";
  }
  for (const GpuPool& p : s.pools())
    out += std::to_string(p.partial_gpus.size()) + "/" + std::to_string(p.nodes_by_free.size());
  return out;
}

TEST(PropertyTest, InvariantsHoldOverRandomClustersAndCycles) {
  constexpr int kClusters = 200;
  constexpr int kCycles = 12;
  int binds = 0, evictions = 0;
  for (int seed = 1; seed <= kClusters; ++seed) {
    RandomCluster gen(seed);
    ClusterState s = gen.Build();
    SchedulerConfig config;
    config.check_invariants = true;
    config.max_evictions_per_workload = gen.Uniform(1, 6);
    const Scheduler scheduler(config);
    for (int cycle = 0; cycle < kCycles; ++cycle) {
      gen.AddWorkloads(s, gen.Uniform(0, 25));
      const CycleResult r = scheduler.RunCycle(s);
      ASSERT_TRUE(r.invariants.ok())
          << "seed " << seed << " cycle " << cycle << ": " << r.invariants.message();
      binds += r.stats.binds;
      evictions += r.stats.evictions;
      // Every workload left pending was told why; every bind names a node.
      std::vector<bool> explained(s.workload_count(), false);
      for (const Decision& d : r.decisions) {
        EXPECT_FALSE(d.reason.empty());
        if (d.kind == DecisionKind::kUnschedulable) explained[d.workload] = true;
        if (d.kind == DecisionKind::kBind || d.kind == DecisionKind::kNominate) {
          EXPECT_NE(d.node, kNone);
        }
      }
      for (QueueId q = 0; q < s.queue_count(); ++q) {
        for (const PendingKey& key : s.pending(q)) {
          // Evicted this cycle: pending without an unschedulable decision, by design.
          bool evicted = false;
          for (const Decision& d : r.decisions)
            evicted |= d.kind == DecisionKind::kEvict && d.workload == key.id;
          EXPECT_TRUE(explained[key.id] || evicted) << s.workload(key.id).spec.name;
        }
      }
      gen.CompleteSome(s);
      ASSERT_TRUE(CheckInvariants(s).ok()) << "after completions, seed " << seed;
    }
  }
  // The generator must actually exercise the scheduler.
  EXPECT_GT(binds, 1000);
  EXPECT_GT(evictions, 10);
}

TEST(PropertyTest, RollbackRestoresTheExactState) {
  for (int seed = 100; seed < 130; ++seed) {
    RandomCluster gen(seed);
    ClusterState s = gen.Build();
    gen.AddWorkloads(s, 40);
    Scheduler(SchedulerConfig{}).RunCycle(s);
    gen.AddWorkloads(s, 40);
    const std::string before = Fingerprint(s);
    const size_t mark = s.Checkpoint();
    // Random binds and unbinds inside one transaction.
    int changes = 0;
    for (WorkloadId id = 0; id < s.workload_count(); ++id) {
      const WorkloadState& w = s.workload(id);
      if (w.status == WorkloadStatus::kBound && gen.Coin()) {
        s.Unbind(id);
        ++changes;
      } else if (w.status == WorkloadStatus::kPending) {
        std::string reason;
        if (auto p = FindPlacement(s, id, {}, &reason)) {
          s.Bind(id, *p);
          ++changes;
        }
      }
    }
    if (changes > 0) {
      EXPECT_NE(Fingerprint(s), before);
    }
    s.Rollback(mark);
    EXPECT_EQ(Fingerprint(s), before) << "seed " << seed;
    EXPECT_TRUE(CheckInvariants(s).ok());
  }
}

}  // namespace
}  // namespace gpufrac::sched
