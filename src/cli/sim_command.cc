// gpufrac sim SCENARIO.yaml: runs the cluster scheduler core in simulated time over a scenario
// and reports allocation, fragmentation, waits, fair share, evictions and cycle times.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "sched/scenario.h"
#include "sched/sim_report.h"
#include "sched/simulator.h"

namespace gpufrac::cli {
namespace {

// Exit codes: usage and scenario errors are the user's (2); a broken invariant is ours (1).
constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

struct SimFlags {
  std::string scenario;
  std::string json;
  std::string plot_dir;
  std::string decisions;
  bool no_render = false;
  bool check_invariants = false;
  bool quiet = false;
  double duration = -1;
  int64_t seed = -1;
};

int RunSim(const SimFlags& flags) {
  sched::Scenario scenario;
  Status status = sched::LoadScenarioFile(flags.scenario, &scenario);
  if (!status.ok()) {
    std::fprintf(stderr, "gpufrac sim: error: %s\n", status.message().c_str());
    return kExitUsage;
  }
  if (flags.check_invariants) scenario.scheduler.check_invariants = true;
  if (flags.duration >= 0) scenario.sim.duration = flags.duration;
  if (flags.duration > 0 && scenario.sim.warmup >= flags.duration) {
    std::fprintf(stderr,
                 "gpufrac sim: error: --duration: must be longer than the scenario's sim.warmup "
                 "(%g s), or no sample is left for the steady state\n",
                 scenario.sim.warmup);
    return kExitUsage;
  }
  if (flags.seed >= 0) scenario.sim.seed = static_cast<uint64_t>(flags.seed);
  if (!scenario.generator.empty() && scenario.sim.duration <= 0) {
    std::fprintf(stderr, "gpufrac sim: error: --duration: must be > 0 with a generator\n");
    return kExitUsage;
  }
  std::ofstream decisions;
  sched::DecisionSink sink;
  if (!flags.decisions.empty()) {
    decisions.open(flags.decisions);
    if (!decisions) {
      std::fprintf(stderr, "gpufrac sim: error: --decisions: cannot write %s\n",
                   flags.decisions.c_str());
      return kExitUsage;
    }
    sink = [&decisions](double t, const sched::ClusterState& state, const sched::Decision& d) {
      decisions << sched::DecisionJsonLine(t, state, d) << "\n";
    };
  }
  sched::SimReport report;
  status = sched::RunSimulation(scenario, &report, sink);
  decisions.close();
  if (!status.ok()) {
    std::fprintf(stderr, "gpufrac sim: error: %s: %s\n", flags.scenario.c_str(),
                 status.message().c_str());
    return kExitUsage;
  }
  // With the JSON on stdout, the table goes to stderr so that stdout stays one JSON document.
  if (!flags.quiet) sched::PrintReportTable(report, flags.json == "-" ? stderr : stdout);
  if (!flags.json.empty()) {
    const std::string json = sched::ReportJson(report);
    if (flags.json == "-") {
      std::printf("%s\n", json.c_str());
    } else {
      std::ofstream out(flags.json);
      out << json << "\n";
      if (!out) {
        std::fprintf(stderr, "gpufrac sim: error: --json: cannot write %s\n", flags.json.c_str());
        return kExitFailure;
      }
    }
  }
  if (!flags.plot_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(flags.plot_dir, ec);
    status = sched::WritePlots(report, flags.plot_dir, !flags.no_render);
    if (!status.ok()) {
      std::fprintf(stderr, "gpufrac sim: error: --plot-dir: %s\n", status.message().c_str());
      return kExitFailure;
    }
  }
  if (report.invariant_failures > 0) {
    std::fprintf(stderr, "gpufrac sim: %d cycle(s) broke an invariant; first: %s\n",
                 report.invariant_failures, report.first_invariant_failure.c_str());
    return kExitFailure;
  }
  return 0;
}

}  // namespace

void AddSimCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<SimFlags>();
  CLI::App* sub = app.add_subcommand(
      "sim", "Simulate a cluster scheduled by the gpufrac scheduler core (scenario YAML)");
  sub->add_option("scenario", flags->scenario, "Scenario file (see docs/scheduler.md)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--json", flags->json, "Write the report as JSON to FILE ('-': stdout)")
      ->envname("GPUFRAC_SIM_JSON");
  sub->add_option("--plot-dir", flags->plot_dir,
                  "Write timeseries.dat and plot.gp there and render PNGs with gnuplot")
      ->envname("GPUFRAC_SIM_PLOT_DIR");
  sub->add_option("--decisions", flags->decisions,
                  "Write every decision (bind, evict, nominate, unschedulable) with its reason "
                  "as JSON lines to FILE");
  sub->add_flag("--no-render", flags->no_render, "With --plot-dir: write the data, skip gnuplot");
  sub->add_flag("--check-invariants", flags->check_invariants,
                "Verify the scheduler's invariants after every cycle (slower)")
      ->envname("GPUFRAC_SIM_CHECK_INVARIANTS");
  sub->add_option("--duration", flags->duration, "Override sim.duration (simulated seconds)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", flags->seed, "Override sim.seed (generator randomness)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--quiet", flags->quiet, "Do not print the table");
  sub->callback([flags, exit_code] { *exit_code = RunSim(*flags); });
}

}  // namespace gpufrac::cli
