// Data-file tests. tests/sched/scenarios/*.yaml: cluster and workloads in, expected placements,
// evictions, pending workloads and reasons out (the `expect:` section), after the given number
// of scheduling cycles. tests/sched/bad/*.yaml: files that must be refused; the first line reads
// "# error: <text the one-line error must contain>". examples/sched/*.yaml must all load.
#include "sched/scenario.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "sched/test_util.h"

namespace gpufrac::sched {
namespace {

std::vector<std::string> YamlFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(GPUFRAC_SOURCE_DIR) + "/" + dir)) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = std::filesystem::path(info.param).stem().string();
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

class ScenarioFileTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioFileTest, MatchesExpectations) {
  Scenario scenario;
  const Status loaded = LoadScenarioFile(GetParam(), &scenario);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  ASSERT_TRUE(scenario.expect.present) << "scenario tests need an expect: section";
  ClusterState state = BuildClusterState(scenario);
  for (const TraceEntry& entry : scenario.trace) {
    WorkloadId id = kNone;
    std::string error;
    ASSERT_TRUE(AddTraceEntry(&state, entry, &id, &error)) << error;
  }
  SchedulerConfig config = scenario.scheduler;
  config.check_invariants = true;
  const Scheduler scheduler(config);
  std::set<std::string> evicted;
  std::map<std::string, std::string> last_reason;
  for (int cycle = 0; cycle < scenario.expect.cycles; ++cycle) {
    const CycleResult r = scheduler.RunCycle(state);
    ASSERT_TRUE(r.invariants.ok()) << r.invariants.message();
    for (const Decision& d : r.decisions) {
      const std::string& name = state.workload(d.workload).spec.name;
      last_reason[name] = d.reason;
      if (d.kind == DecisionKind::kEvict) evicted.insert(name);
    }
  }
  for (const auto& [name, where] : scenario.expect.bound) {
    const WorkloadId id = state.FindWorkload(name);
    ASSERT_NE(id, kNone) << "expect.bound names unknown workload " << name;
    EXPECT_EQ(testing::Where(state, id), where) << name << " (" << last_reason[name] << ")";
  }
  for (const std::string& name : scenario.expect.pending) {
    const WorkloadId id = state.FindWorkload(name);
    ASSERT_NE(id, kNone) << name;
    EXPECT_EQ(testing::Where(state, id), "pending") << name;
  }
  EXPECT_EQ(evicted,
            std::set<std::string>(scenario.expect.evicted.begin(), scenario.expect.evicted.end()));
  for (const auto& [name, text] : scenario.expect.reason_contains) {
    EXPECT_NE(last_reason[name].find(text), std::string::npos)
        << name << ": reason was '" << last_reason[name] << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioFileTest,
                         ::testing::ValuesIn(YamlFiles("tests/sched/scenarios")), TestName);

class BadScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BadScenarioTest, IsRefusedWithKeyPathAndReason) {
  std::ifstream in(GetParam());
  std::string first_line;
  std::getline(in, first_line);
  const std::string marker = "# error: ";
  ASSERT_EQ(first_line.rfind(marker, 0), 0u) << "first line must be '# error: ...'";
  const std::string expected = first_line.substr(marker.size());
  Scenario scenario;
  const Status st = LoadScenarioFile(GetParam(), &scenario);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(expected), std::string::npos) << st.message();
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << "one line: " << st.message();
  EXPECT_EQ(st.message().rfind(GetParam(), 0), 0u) << "names the file: " << st.message();
}

INSTANTIATE_TEST_SUITE_P(BadFiles, BadScenarioTest,
                         ::testing::ValuesIn(YamlFiles("tests/sched/bad")), TestName);

class ExampleScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExampleScenarioTest, Loads) {
  Scenario scenario;
  const Status st = LoadScenarioFile(GetParam(), &scenario);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_FALSE(scenario.name.empty());
}

INSTANTIATE_TEST_SUITE_P(Examples, ExampleScenarioTest,
                         ::testing::ValuesIn(YamlFiles("examples/sched")), TestName);

TEST(ScenarioParseTest, ReadsUnitsAndDefaults) {
  Scenario s;
  const Status st = ParseScenario(R"(
name: units
sim: {duration: 2h, cycle_interval: 500ms}
cluster:
  node_groups:
    - {name: n, count: 3, gpu_memory: 40GiB, gpus: 4, cpu: 1500m, memory: 1TiB, racks: 2}
queues:
  - {name: q, deserved: {gpu: 1.5, cpu: 4, memory: 8GiB}, weight: 2}
workloads:
  - {name: w, queue: q, gpu_memory: 10GiB, gpu_memory_limit: 20GiB, arrival: 1m, duration: 90s}
)",
                                  "inline", &s);
  // "500ms" is not a supported duration: the error names the key.
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("sim.cycle_interval"), std::string::npos) << st.message();
  const Status ok = ParseScenario(R"(
cluster:
  node_groups:
    - {name: n, count: 3, gpu_memory: 40GiB, gpus: 4, cpu: 1500m, memory: 1TiB, racks: 2}
queues:
  - {name: q, deserved: {gpu: 1.5, cpu: 4, memory: 8GiB}, weight: 2}
workloads:
  - {name: w, queue: q, gpu_memory: 10GiB, gpu_memory_limit: 20GiB, arrival: 1m, duration: 90s}
)",
                                  "inline", &s);
  ASSERT_TRUE(ok.ok()) << ok.message();
  ASSERT_EQ(s.nodes.size(), 3u);
  EXPECT_EQ(s.nodes[2].name, "n-2");
  EXPECT_EQ(s.nodes[2].labels.at("rack"), "n-r0");
  EXPECT_EQ(s.nodes[1].labels.at("rack"), "n-r1");
  EXPECT_EQ(s.nodes[0].cpu_milli, 1500);
  EXPECT_EQ(s.nodes[0].gpu_type, "gpu");
  EXPECT_DOUBLE_EQ(s.queues[0].deserved[Resource::kMemory], 8.0 * testing::kGiB);
  EXPECT_DOUBLE_EQ(s.queues[0].over_quota_weight, 2);
  ASSERT_EQ(s.trace.size(), 1u);
  EXPECT_EQ(s.trace[0].spec.gpu.kind, GpuRequestKind::kMemory);
  EXPECT_EQ(s.trace[0].spec.gpu.memory_limit, 20 * testing::kGiB);
  EXPECT_EQ(s.trace[0].spec.priority_class, "training");
  EXPECT_TRUE(s.trace[0].spec.preemptible);
  EXPECT_DOUBLE_EQ(s.trace[0].arrival, 60);
  EXPECT_DOUBLE_EQ(s.trace[0].duration, 90);
}

// AddTraceEntry is also called on entries not checked by the parser (tests, benchmarks).
TEST(AddTraceEntryTest, RefusesAGpuListedTwice) {
  ClusterState state;
  state.AddNode(testing::Node("n", 2));
  state.AddQueue(testing::Queue("q", 2));
  TraceEntry entry;
  entry.spec = testing::Whole("w", 0, 2);
  entry.bound_node = "n";
  entry.bound_gpus = {0, 0};
  WorkloadId id = kNone;
  std::string error;
  EXPECT_FALSE(AddTraceEntry(&state, entry, &id, &error));
  EXPECT_NE(error.find("lists GPU 0 twice"), std::string::npos) << error;
}

}  // namespace
}  // namespace gpufrac::sched
