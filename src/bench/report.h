// Reports of a run: a console table in GenAI-Perf's layout, a JSON summary, a CSV of the metrics,
// and a JSONL line per request. Sweeps add one CSV row and one JSON entry per point.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/loadgen.h"
#include "bench/metrics.h"
#include "bench/slo.h"

namespace gpufrac::bench {

struct SloResult {
  Slo slo;
  double value = 0;
  bool met = false;
};

struct RunReport {
  std::string label;  // e.g. "concurrency 8" or "rate 20/s"
  std::string axis;   // "concurrency" or "rate"
  double axis_value = 0;
  MetricsSummary total;
  std::vector<std::string> workload_names;
  std::vector<MetricsSummary> per_workload;  // empty for a single workload
  std::vector<SloResult> slos;
  uint64_t connections_opened = 0;
  bool slos_met() const;
};

RunReport MakeReport(const RunResult& result, const std::vector<Slo>& slos, std::string axis,
                     double axis_value);

std::string FormatConsole(const RunReport& report, bool streaming);
nlohmann::json ReportJson(const RunReport& report);
std::string SummaryCsv(const MetricsSummary& summary);
std::string SweepCsv(const std::vector<RunReport>& reports);
nlohmann::json RequestJson(const RequestRecord& record, const std::string& workload_name);
// Appends every request of the run as one JSON line.
Status AppendRequestsJsonl(const std::string& path, const RunResult& result,
                           const std::string& run_label);
Status WriteTextFile(const std::string& path, const std::string& text);

}  // namespace gpufrac::bench
