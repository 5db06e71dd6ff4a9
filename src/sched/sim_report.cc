#include "sched/sim_report.h"

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

namespace gpufrac::sched {
namespace {

constexpr double kPercent = 100;

void PrintWaits(const char* title, const std::map<std::string, WaitStats>& waits, std::FILE* out) {
  std::fprintf(out, "\n%-20s %8s %10s %10s %10s %10s %8s\n", title, "started", "mean s", "p50 s",
               "p95 s", "max s", "waiting");
  for (const auto& [name, w] : waits) {
    std::fprintf(out, "%-20s %8d %10.1f %10.1f %10.1f %10.1f %8d\n", name.c_str(), w.count, w.mean,
                 w.p50, w.p95, w.max, w.never_started);
  }
}

nlohmann::json WaitsJson(const std::map<std::string, WaitStats>& waits) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, w] : waits) {
    j[name] = {{"started", w.count}, {"mean_s", w.mean}, {"p50_s", w.p50},
               {"p95_s", w.p95},     {"max_s", w.max},   {"never_started", w.never_started}};
  }
  return j;
}

}  // namespace

void PrintReportTable(const SimReport& r, std::FILE* out) {
  std::fprintf(out, "scenario %s: %d nodes, %d GPUs, %.0f s simulated in %d cycles\n",
               r.scenario.c_str(), r.nodes, r.gpus, r.simulated_seconds, r.cycles);
  std::fprintf(out, "%-34s %12s\n", "metric", "value");
  auto row = [out](const char* name, double value, const char* unit) {
    std::fprintf(out, "%-34s %12.2f %s\n", name, value, unit);
  };
  row("arrivals", r.arrivals, "");
  row("completed", r.completed, "");
  row("binds", r.binds, "");
  for (const auto& [action, count] : r.evictions_by_action) {
    const std::string name = "evictions (" + action + ")";
    row(name.c_str(), count, "");
  }
  row("unschedulable workloads", r.unschedulable_workloads, "(told at least once)");
  row("pending at end", static_cast<double>(r.pending_at_end), "");
  row("GPU allocated (steady mean)", r.mean_gpu_allocated * kPercent, "%");
  row("stranded GPU memory (mean)", r.mean_stranded * kPercent, "%");
  row("stranded GPU memory (max)", r.max_stranded * kPercent, "%");
  row("GPUs in use / FFD reference", r.mean_ffd_gpus_ratio, "x");
  row("fair-share deviation (mean max)", r.fair_share_deviation * kPercent, "% of fair share");
  row("fair-share deviation (abs)", r.fair_share_deviation_abs * kPercent, "% of all GPUs");
  row("cycle time mean", r.cycle_ms_mean, "ms");
  row("cycle time p50", r.cycle_ms_p50, "ms");
  row("cycle time p99", r.cycle_ms_p99, "ms");
  row("cycle time max", r.cycle_ms_max, "ms");
  row("invariant failures", r.invariant_failures, r.first_invariant_failure.c_str());
  PrintWaits("wait by queue", r.waits_by_queue, out);
  PrintWaits("wait by priority", r.waits_by_priority, out);
  PrintWaits("wait by queue/prio", r.waits_by_queue_priority, out);
}

std::string DecisionJsonLine(double t, const ClusterState& state, const Decision& d) {
  const WorkloadState& w = state.workload(d.workload);
  nlohmann::json j = {{"t", t},
                      {"kind", DecisionKindName(d.kind)},
                      {"action", ActionName(d.action)},
                      {"workload", w.spec.name},
                      {"queue", state.queue(w.spec.queue).spec.name},
                      {"reason", d.reason}};
  if (d.node != kNone) {
    const NodeState& node = state.node(d.node);
    j["node"] = node.spec.name;
    nlohmann::json gpus = nlohmann::json::array();
    for (int32_t g : d.gpus) gpus.push_back(g - node.first_gpu);
    j["gpus"] = std::move(gpus);
  }
  return j.dump();
}

std::string ReportJson(const SimReport& r) {
  nlohmann::json j;
  j["scenario"] = r.scenario;
  j["nodes"] = r.nodes;
  j["gpus"] = r.gpus;
  j["simulated_seconds"] = r.simulated_seconds;
  j["cycles"] = r.cycles;
  j["arrivals"] = r.arrivals;
  j["completed"] = r.completed;
  j["binds"] = r.binds;
  j["evictions"] = r.evictions_by_action;
  j["unschedulable_decisions"] = r.unschedulable_decisions;
  j["unschedulable_workloads"] = r.unschedulable_workloads;
  j["pending_at_end"] = r.pending_at_end;
  j["steady_state"] = {{"gpu_allocated", r.mean_gpu_allocated},
                       {"stranded_mean", r.mean_stranded},
                       {"stranded_max", r.max_stranded},
                       {"gpus_in_use_over_ffd", r.mean_ffd_gpus_ratio},
                       {"fair_share_deviation", r.fair_share_deviation},
                       {"fair_share_deviation_abs", r.fair_share_deviation_abs}};
  j["cycle_ms"] = {{"mean", r.cycle_ms_mean},
                   {"p50", r.cycle_ms_p50},
                   {"p99", r.cycle_ms_p99},
                   {"max", r.cycle_ms_max}};
  j["invariant_failures"] = r.invariant_failures;
  if (!r.first_invariant_failure.empty()) j["first_invariant_failure"] = r.first_invariant_failure;
  j["waits_by_queue"] = WaitsJson(r.waits_by_queue);
  j["waits_by_priority"] = WaitsJson(r.waits_by_priority);
  j["waits_by_queue_priority"] = WaitsJson(r.waits_by_queue_priority);
  j["queues"] = r.leaf_queues;
  nlohmann::json samples = nlohmann::json::array();
  for (const SimSample& s : r.samples) {
    samples.push_back({{"t", s.time},
                       {"gpu_allocated", s.gpu_allocated},
                       {"stranded", s.stranded},
                       {"gpus_in_use_over_ffd", s.ffd_gpus_ratio},
                       {"whole_free_gpus", s.whole_free_gpus},
                       {"partial_gpus", s.partial_gpus},
                       {"pending", s.pending},
                       {"running", s.running},
                       {"queue_gpu", s.queue_gpu},
                       {"queue_fair_gpu", s.queue_fair_gpu}});
  }
  j["samples"] = std::move(samples);
  return j.dump(2);
}

Status WritePlots(const SimReport& r, const std::string& dir, bool render) {
  const std::string data_path = dir + "/timeseries.dat";
  std::ofstream data(data_path);
  if (!data) return Status::Error(data_path + ": cannot write");
  data << "# t gpu_allocated stranded pending running whole_free partial";
  for (const std::string& q : r.leaf_queues) data << " " << q << "_gpu " << q << "_fair";
  data << "\n";
  for (const SimSample& s : r.samples) {
    data << s.time << " " << s.gpu_allocated * kPercent << " " << s.stranded * kPercent << " "
         << s.pending << " " << s.running << " " << s.whole_free_gpus << " " << s.partial_gpus;
    for (size_t i = 0; i < s.queue_gpu.size(); ++i) {
      data << " " << s.queue_gpu[i] << " " << s.queue_fair_gpu[i];
    }
    data << "\n";
  }
  data.close();
  const std::string script_path = dir + "/plot.gp";
  std::ofstream gp(script_path);
  if (!gp) return Status::Error(script_path + ": cannot write");
  gp << "# gnuplot script written by gpufrac sim; run from this directory.\n"
     << "set terminal pngcairo size 1000,500\nset key outside\nset xlabel 'simulated time (s)'\n"
     << "set output 'allocation.png'\nset ylabel '% of GPUs'\nset title '" << r.scenario
     << ": GPU allocation and stranded capacity'\n"
     << "plot 'timeseries.dat' using 1:2 with lines title 'allocated', "
     << "'' using 1:3 with lines title 'stranded'\n"
     << "set output 'pending.png'\nset ylabel 'workloads'\nset title '" << r.scenario
     << ": pending and running'\n"
     << "plot 'timeseries.dat' using 1:4 with lines title 'pending', "
     << "'' using 1:5 with lines title 'running'\n"
     << "set output 'queues.png'\nset ylabel 'GPUs'\nset title '" << r.scenario
     << ": allocation vs fair share per queue'\nplot ";
  for (size_t i = 0; i < r.leaf_queues.size(); ++i) {
    const size_t col = 8 + 2 * i;
    // Same colour for a queue and its fair share; the share dashed.
    gp << (i ? ", " : "") << "'timeseries.dat' using 1:" << col << " with lines lt " << i + 1
       << " title '" << r.leaf_queues[i] << "', '' using 1:" << col + 1 << " with lines lt "
       << i + 1 << " dt 2 title '" << r.leaf_queues[i] << " fair'";
  }
  if (r.leaf_queues.empty()) gp << "0 notitle";
  gp << "\n";
  gp.close();
  if (!render) return Status::Ok();
  const std::string command = "cd '" + dir + "' && gnuplot plot.gp 2>/dev/null";
  if (std::system(command.c_str()) != 0) {
    return Status::Error("gnuplot failed to render the plots in " + dir);
  }
  return Status::Ok();
}

}  // namespace gpufrac::sched
