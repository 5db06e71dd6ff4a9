#include "sched/simulator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sched/ffd.h"
#include "sched/packing_metrics.h"
#include "sched/placement.h"
#include "sched/sim_report.h"
#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

Scenario Parse(const std::string& yaml) {
  Scenario s;
  const Status st = ParseScenario(yaml, "test", &s);
  EXPECT_TRUE(st.ok()) << st.message();
  return s;
}

const char* kOneGpu = R"(
name: one-gpu
sim: {cycle_interval: 10s, sample_interval: 10s}
cluster:
  node_groups:
    - {name: n, gpu_memory: 80GiB, gpus: 1, cpu: 8, memory: 64GiB}
queues:
  - {name: q, deserved: {gpu: 1}}
)";

TEST(FfdTest, PacksLikeFirstFitDecreasing) {
  EXPECT_EQ(FirstFitDecreasingBins({}, 1000), 0);
  EXPECT_EQ(FirstFitDecreasingBins({500, 500, 500}, 1000), 2);
  EXPECT_EQ(FirstFitDecreasingBins({300, 700, 400, 600}, 1000), 2);
  EXPECT_EQ(FirstFitDecreasingBins({600, 600, 600}, 1000), 3);
  // FFD is not optimal: {4,4,3,3,2,2} fits two bins of 9 (4+3+2 twice), but FFD fills 4+4,
  // then 3+3+2, and needs a third bin for the last 2.
  EXPECT_EQ(FirstFitDecreasingBins({4, 4, 3, 3, 2, 2}, 9), 3);
}

TEST(PackingMetricsTest, StrandedAndFfdOnAKnownState) {
  ClusterState s;
  s.AddNode(testing::Node("n", 2, 80 * testing::kGiB));
  const QueueId q = s.AddQueue(testing::Queue("q", 2));
  for (const char* name : {"a", "b"}) {
    const WorkloadId id = s.AddWorkload(testing::Fraction(name, q, 0.75));
    std::string reason;
    s.Bind(id, *FindPlacement(s, id, {}, &reason));
  }
  EXPECT_DOUBLE_EQ(StrandedShare(s), 0);  // nothing pending: nothing stranded
  EXPECT_DOUBLE_EQ(FfdRatio(s), 1);       // two 0.75s need two GPUs either way
  s.AddWorkload(testing::Fraction("c", q, 0.5));
  // 20 GiB free on each 80 GiB GPU, and the pending 0.5 fits neither.
  EXPECT_DOUBLE_EQ(StrandedShare(s), 0.25);
  s.AddWorkload(testing::Fraction("d", q, 0.25));
  EXPECT_DOUBLE_EQ(StrandedShare(s), 0);  // the 0.25 fits either hole
}

TEST(SimulatorTest, TraceRunsToCompletionWithWaits) {
  Scenario s = Parse(std::string(kOneGpu) + R"(
workloads:
  - {name: first, queue: q, gpus: 1, duration: 100s}
  - {name: second, queue: q, gpus: 1, duration: 100s}
)");
  SimReport r;
  ASSERT_TRUE(RunSimulation(s, &r).ok());
  EXPECT_EQ(r.arrivals, 2);
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.binds, 2);
  EXPECT_EQ(r.pending_at_end, 0u);
  const WaitStats& w = r.waits_by_queue.at("q");
  EXPECT_EQ(w.count, 2);
  EXPECT_DOUBLE_EQ(w.max, 100);  // the second starts at the first cycle after t=100
  EXPECT_DOUBLE_EQ(w.p50, 100);
  EXPECT_EQ(r.unschedulable_workloads, 1);
  EXPECT_GE(r.simulated_seconds, 200);
}

TEST(SimulatorTest, PreemptedWorkResumesAndFinishes) {
  Scenario s = Parse(std::string(kOneGpu) + R"(
workloads:
  - {name: batch, queue: q, priority: batch, gpus: 1, duration: 100s}
  - {name: chat, queue: q, priority: inference, gpu: 0.5, arrival: 30s, duration: 50s}
)");
  SimReport r;
  ASSERT_TRUE(RunSimulation(s, &r).ok());
  EXPECT_EQ(r.evictions_by_action["preempt"], 1);
  EXPECT_EQ(r.completed, 2);
  // batch ran 30 s, waited for chat (30..80 s), then ran its remaining 70 s from t=80.
  EXPECT_DOUBLE_EQ(r.waits_by_priority.at("inference").max, 0);
  EXPECT_DOUBLE_EQ(r.waits_by_queue_priority.at("q/inference").max, 0);
  EXPECT_EQ(r.waits_by_queue_priority.at("q/batch").count, 1);
  EXPECT_GE(r.simulated_seconds, 150);
}

TEST(SimulatorTest, GeneratorIsDeterministicPerSeed) {
  std::string base = std::string(kOneGpu) + R"(
generator:
  - {name: g, queue: q, rate: 0.05, mean_duration: 60s, shapes: [{gpu: 0.25}, {gpu: 0.5}]}
)";
  base.replace(base.find("sim: {"), 6, "sim: {duration: 1h, ");
  Scenario a = Parse(base);
  std::vector<GangEntry> gangs;
  const std::vector<TraceEntry> one = ExpandWorkload(a, &gangs);
  const std::vector<TraceEntry> two = ExpandWorkload(a, &gangs);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_GT(one.size(), 100u);  // ~180 expected at 0.05/s over an hour
  EXPECT_LT(one.size(), 260u);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_DOUBLE_EQ(one[i].arrival, two[i].arrival);
  a.sim.seed = 2;
  EXPECT_NE(ExpandWorkload(a, &gangs).front().arrival, one.front().arrival);
  SimReport r1, r2;
  ASSERT_TRUE(RunSimulation(a, &r1).ok());
  ASSERT_TRUE(RunSimulation(a, &r2).ok());
  EXPECT_EQ(r1.binds, r2.binds);
  EXPECT_EQ(r1.completed, r2.completed);
}

// Runs examples/sched/NAME for duration_s simulated seconds with the invariants checked every
// cycle, and expects none to fail.
SimReport RunExample(const std::string& name, double duration_s, double warmup_s = -1) {
  Scenario s;
  const Status loaded =
      LoadScenarioFile(std::string(GPUFRAC_SOURCE_DIR) + "/examples/sched/" + name, &s);
  EXPECT_TRUE(loaded.ok()) << loaded.message();
  s.sim.duration = duration_s;
  if (warmup_s >= 0) s.sim.warmup = warmup_s;
  s.scheduler.check_invariants = true;
  SimReport r;
  const Status ran = RunSimulation(s, &r);
  EXPECT_TRUE(ran.ok()) << ran.message();
  EXPECT_EQ(r.invariant_failures, 0) << r.first_invariant_failure;
  return r;
}

TEST(SimulatorTest, ChurnKeepsInvariantsAndMeasures) {
  const SimReport r = RunExample("fractional-churn.yaml", 2 * 3600, 1800);
  EXPECT_GT(r.completed, 100);
  EXPECT_GT(r.mean_gpu_allocated, 0.5);
  EXPECT_LT(r.mean_stranded, 0.2);
  EXPECT_GE(r.mean_ffd_gpus_ratio, 0.99);  // no packing beats FFD by much on these shapes
  EXPECT_EQ(r.samples.size(), static_cast<size_t>(2 * 3600 / 300 + 1));
  ASSERT_FALSE(r.samples.empty());
  EXPECT_EQ(r.samples[0].queue_gpu.size(), 2u);
}

// A gang of 8-16 whole GPUs is about 2% of the training queue's 384-GPU share here, so the queue
// can be held within the 5% target; on the 64-GPU gangs scenario one gang alone is more than 5%.
TEST(SimulatorTest, GangQueueStaysWithinFivePercentOfItsFairShareWhenGangsAreSmallAgainstIt) {
  const SimReport r = RunExample("gangs-large.yaml", 3 * 3600);
  EXPECT_GT(r.completed, 1000);
  EXPECT_GT(r.mean_gpu_allocated, 0.95);
  EXPECT_LE(r.fair_share_deviation, 0.05);
}

TEST(SimulatorTest, ReplaysACsvTrace) {
  Scenario s;
  const Status st =
      LoadScenarioFile(std::string(GPUFRAC_SOURCE_DIR) + "/examples/sched/trace-replay.yaml", &s);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(s.trace.size(), 120u);
  EXPECT_EQ(s.trace[0].spec.name, "job-0");
  EXPECT_DOUBLE_EQ(s.trace[0].arrival, 16);
  EXPECT_DOUBLE_EQ(s.trace[0].duration, 142);
  EXPECT_EQ(s.trace[0].spec.gpu.portion_milli, 250);
  s.scheduler.check_invariants = true;
  SimReport r;
  ASSERT_TRUE(RunSimulation(s, &r).ok());
  EXPECT_EQ(r.arrivals, 120);
  EXPECT_EQ(r.completed, 120);
  EXPECT_EQ(r.invariant_failures, 0);
}

TEST(SimReportTest, JsonTableAndPlots) {
  Scenario s = Parse(std::string(kOneGpu) + R"(
workloads:
  - {name: a, queue: q, gpu: 0.5, duration: 60s}
)");
  SimReport r;
  ASSERT_TRUE(RunSimulation(s, &r).ok());
  const nlohmann::json j = nlohmann::json::parse(ReportJson(r));
  EXPECT_EQ(j["scenario"], "one-gpu");
  EXPECT_EQ(j["completed"], 1);
  EXPECT_TRUE(j["samples"].is_array());
  EXPECT_TRUE(j["cycle_ms"].contains("p99"));
  char buf[4096] = {};
  std::FILE* mem = fmemopen(buf, sizeof(buf) - 1, "w");
  PrintReportTable(r, mem);
  std::fclose(mem);
  EXPECT_NE(std::string(buf).find("cycle time p99"), std::string::npos);
  const std::string dir =
      std::filesystem::temp_directory_path() / ("sched-plots-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WritePlots(r, dir, /*render=*/false).ok());
  EXPECT_TRUE(std::filesystem::file_size(dir + "/timeseries.dat") > 0);
  EXPECT_TRUE(std::filesystem::exists(dir + "/plot.gp"));
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    ASSERT_TRUE(WritePlots(r, dir, /*render=*/true).ok());
    EXPECT_GT(std::filesystem::file_size(dir + "/allocation.png"), 0u);
    EXPECT_GT(std::filesystem::file_size(dir + "/queues.png"), 0u);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gpufrac::sched
