#include "bench/report.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace gpufrac::bench {
namespace {

using nlohmann::json;

struct NamedDistribution {
  const char* title;  // console and CSV
  const char* key;    // JSON
  const Distribution MetricsSummary::*field;
};
constexpr NamedDistribution kDistributions[] = {
    {"Time To First Token (ms)", "time_to_first_token_ms", &MetricsSummary::ttft_ms},
    {"Time To Second Token (ms)", "time_to_second_token_ms", &MetricsSummary::ttst_ms},
    {"Request Latency (ms)", "request_latency_ms", &MetricsSummary::latency_ms},
    {"Inter Token Latency (ms)", "inter_token_latency_ms", &MetricsSummary::itl_ms},
    {"Inter Chunk Latency (ms)", "inter_chunk_latency_ms", &MetricsSummary::icl_ms},
    {"Output Token Throughput Per User (tokens/sec/user)", "output_token_throughput_per_user",
     &MetricsSummary::output_tokens_per_user},
    {"Output Sequence Length (tokens)", "output_sequence_length", &MetricsSummary::output_tokens},
    {"Input Sequence Length (tokens)", "input_sequence_length", &MetricsSummary::input_tokens},
    {"Schedule Lag (ms)", "schedule_lag_ms", &MetricsSummary::schedule_lag_ms},
    {"Client Queue Wait (ms)", "client_queue_wait_ms", &MetricsSummary::queue_wait_ms},
};
constexpr int kConsolePercentiles[] = {99, 90, 75, 50, 25};

json Finite(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json DistributionJson(const Distribution& d) {
  json out = {{"count", d.count}};
  if (d.count == 0) return out;
  out["avg"] = Finite(d.mean);
  out["min"] = Finite(d.min);
  out["max"] = Finite(d.max);
  out["std"] = Finite(d.std);
  for (size_t i = 0; i < kPercentiles.size(); ++i) {
    out["p" + std::to_string(kPercentiles[i])] = Finite(d.percentiles[i]);
  }
  return out;
}

json SummaryJson(const MetricsSummary& s) {
  json out;
  out["requests"] = {{"measured", s.measured},
                     {"ok", s.ok},
                     {"failed", s.failed},
                     {"cancelled", s.cancelled},
                     {"warmup", s.warmup}};
  out["errors_by_kind"] = s.errors_by_kind;
  if (!s.first_error.empty()) out["first_error"] = s.first_error;
  out["window_s"] = s.window_s;
  out["request_throughput"] = s.request_throughput;
  out["output_token_throughput"] = s.output_token_throughput;
  out["error_rate"] = s.error_rate;
  if (s.goodput) {
    out["goodput"] = *s.goodput;
    out["good_requests"] = s.good;
  }
  json metrics = json::object();
  for (const NamedDistribution& d : kDistributions) {
    metrics[d.key] = DistributionJson(s.*(d.field));
  }
  out["metrics"] = metrics;
  out["output_token_source"] = s.output_token_source;
  out["input_token_source"] = s.input_token_source;
  out["requests_without_usage"] = s.usage_missing;
  return out;
}

std::string Number(double v) {
  if (!std::isfinite(v)) return "-";
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", v);
  return text;
}

}  // namespace

bool RunReport::slos_met() const {
  for (const SloResult& r : slos) {
    if (!r.met) return false;
  }
  return true;
}

RunReport MakeReport(const RunResult& result, const std::vector<Slo>& slos, std::string axis,
                     double axis_value) {
  RunReport report;
  report.axis = std::move(axis);
  report.axis_value = axis_value;
  char label[64];
  std::snprintf(label, sizeof(label), "%s %g", report.axis.c_str(), axis_value);
  report.label = label;
  report.total = Summarize(result.records, slos);
  report.workload_names = result.workload_names;
  if (result.workload_names.size() > 1) {
    for (size_t i = 0; i < result.workload_names.size(); ++i) {
      report.per_workload.push_back(Summarize(result.records, slos, static_cast<int>(i)));
    }
  }
  for (const Slo& slo : slos) {
    SloResult r{slo, SloValue(report.total, slo), false};
    r.met = SloHolds(report.total, slo);
    report.slos.push_back(r);
  }
  report.connections_opened = result.connections_opened;
  return report;
}

std::string FormatConsole(const RunReport& report, bool streaming) {
  std::ostringstream out;
  auto table = [&](const std::string& title, const MetricsSummary& s) {
    char line[256];
    out << "\n  " << title << "\n";
    std::snprintf(line, sizeof(line), "  %-52s %10s %10s %10s %10s %10s %10s %10s %10s\n",
                  "Statistic", "avg", "min", "max", "p99", "p90", "p75", "p50", "p25");
    out << line;
    for (const NamedDistribution& d : kDistributions) {
      const Distribution& dist = s.*(d.field);
      if (dist.count == 0) continue;
      std::snprintf(line, sizeof(line), "  %-52s %10s %10s %10s", d.title,
                    Number(dist.mean).c_str(), Number(dist.min).c_str(), Number(dist.max).c_str());
      out << line;
      for (int p : kConsolePercentiles) {
        std::snprintf(line, sizeof(line), " %10s", Number(dist.Percentile(p)).c_str());
        out << line;
      }
      out << "\n";
    }
    std::snprintf(line, sizeof(line), "  %-52s %10s\n", "Request Throughput (per sec)",
                  Number(s.request_throughput).c_str());
    out << line;
    std::snprintf(line, sizeof(line), "  %-52s %10s\n", "Output Token Throughput (per sec)",
                  Number(s.output_token_throughput).c_str());
    out << line;
    if (s.goodput) {
      std::snprintf(line, sizeof(line), "  %-52s %10s\n", "Goodput (good requests per sec)",
                    Number(*s.goodput).c_str());
      out << line;
    }
    out << "  Requests: " << s.ok << " ok, " << s.failed << " failed";
    if (s.cancelled > 0) {
      out << " (" << s.cancelled << " of them unfinished when the grace period ended)";
    }
    out << ", " << s.warmup << " warm-up; window " << Number(s.window_s) << " s\n";
    for (const auto& [kind, count] : s.errors_by_kind) {
      out << "  Errors (" << kind << "): " << count << "\n";
    }
    if (!s.first_error.empty()) out << "  First error: " << s.first_error << "\n";
    if (s.ok > 0 && s.usage_missing > 0) {
      out << "  Note: " << s.usage_missing << " of " << s.ok
          << " requests had no usage from the server; their output tokens were counted as "
          << (streaming ? "content events" : "words of the answer") << "\n";
    }
  };
  table("Total (" + report.label + ")", report.total);
  for (size_t i = 0; i < report.per_workload.size(); ++i) {
    table("Workload " + report.workload_names[i], report.per_workload[i]);
  }
  for (const SloResult& r : report.slos) {
    out << "  SLO " << r.slo.text << ": " << Number(r.value) << " -> " << (r.met ? "met" : "MISSED")
        << "\n";
  }
  return out.str();
}

json ReportJson(const RunReport& report) {
  json out = SummaryJson(report.total);
  out["label"] = report.label;
  out[report.axis] = report.axis_value;
  out["connections_opened"] = report.connections_opened;
  if (!report.per_workload.empty()) {
    json workloads = json::object();
    for (size_t i = 0; i < report.per_workload.size(); ++i) {
      workloads[report.workload_names[i]] = SummaryJson(report.per_workload[i]);
    }
    out["workloads"] = workloads;
  }
  if (!report.slos.empty()) {
    json slos = json::array();
    for (const SloResult& r : report.slos) {
      slos.push_back({{"slo", r.slo.text}, {"value", Finite(r.value)}, {"met", r.met}});
    }
    out["slos"] = slos;
    out["slos_met"] = report.slos_met();
  }
  return out;
}

std::string SummaryCsv(const MetricsSummary& s) {
  std::ostringstream out;
  out << "Metric,avg,min,max,p99,p95,p90,p75,p50,p25,p10,p5,p1,std\n";
  for (const NamedDistribution& d : kDistributions) {
    const Distribution& dist = s.*(d.field);
    if (dist.count == 0) continue;
    out << d.title << "," << Number(dist.mean) << "," << Number(dist.min) << ","
        << Number(dist.max);
    for (int p : {99, 95, 90, 75, 50, 25, 10, 5, 1}) out << "," << Number(dist.Percentile(p));
    out << "," << Number(dist.std) << "\n";
  }
  out << "\nMetric,Value\n";
  out << "Request Throughput (per sec)," << Number(s.request_throughput) << "\n";
  out << "Output Token Throughput (per sec)," << Number(s.output_token_throughput) << "\n";
  if (s.goodput) out << "Goodput (per sec)," << Number(*s.goodput) << "\n";
  out << "Request Count," << s.ok << "\n";
  out << "Error Count," << s.failed << "\n";
  return out.str();
}

std::string SweepCsv(const std::vector<RunReport>& reports) {
  std::ostringstream out;
  std::string axis = reports.empty() ? "value" : reports.front().axis;
  out << axis
      << ",ok,failed,request_throughput,output_token_throughput,goodput,ttft_p50_ms,ttft_p95_ms,"
         "ttft_p99_ms,itl_p50_ms,itl_p95_ms,itl_p99_ms,latency_p50_ms,latency_p99_ms,"
         "schedule_lag_p99_ms,slos_met\n";
  for (const RunReport& r : reports) {
    const MetricsSummary& s = r.total;
    out << r.axis_value << "," << s.ok << "," << s.failed << "," << Number(s.request_throughput)
        << "," << Number(s.output_token_throughput) << "," << (s.goodput ? Number(*s.goodput) : "-")
        << "," << Number(s.ttft_ms.Percentile(50)) << "," << Number(s.ttft_ms.Percentile(95)) << ","
        << Number(s.ttft_ms.Percentile(99)) << "," << Number(s.itl_ms.Percentile(50)) << ","
        << Number(s.itl_ms.Percentile(95)) << "," << Number(s.itl_ms.Percentile(99)) << ","
        << Number(s.latency_ms.Percentile(50)) << "," << Number(s.latency_ms.Percentile(99)) << ","
        << Number(s.schedule_lag_ms.Percentile(99)) << ","
        << (r.slos.empty() ? "-" : (r.slos_met() ? "yes" : "no")) << "\n";
  }
  return out.str();
}

json RequestJson(const RequestRecord& r, const std::string& workload_name) {
  RequestMetrics m = ComputeRequestMetrics(r);
  json out = {{"id", r.id},
              {"workload", workload_name},
              {"warmup", r.warmup},
              {"planned_ns", r.planned_ns},
              {"dispatched_ns", r.dispatched_ns},
              {"start_ns", r.start_ns},
              {"first_byte_ns", r.first_byte_ns},
              {"end_ns", r.end_ns},
              {"content_ns", r.content_ns},
              {"http_status", r.http_status},
              {"prompt_tokens", r.prompt_tokens},
              {"completion_tokens", r.completion_tokens},
              {"prompt_words", r.prompt_words},
              {"requested_output_tokens", r.requested_output_tokens},
              {"output_tokens", r.OutputTokens()},
              {"error", ErrorKindName(r.error)},
              {"latency_ms", m.latency_ms},
              {"schedule_lag_ms", (r.start_ns - r.planned_ns) / 1e6}};
  if (!r.error_message.empty()) out["error_message"] = r.error_message;
  if (m.ttft_ms) out["ttft_ms"] = *m.ttft_ms;
  if (m.ttst_ms) out["ttst_ms"] = *m.ttst_ms;
  if (m.itl_ms) out["itl_ms"] = *m.itl_ms;
  return out;
}

Status AppendRequestsJsonl(const std::string& path, const RunResult& result,
                           const std::string& run_label) {
  std::ofstream out(path, std::ios::app);
  if (!out) return Status::Error("cannot write " + path);
  for (const RequestRecord& r : result.records) {
    json line = RequestJson(r, result.workload_names.at(r.workload));
    line["run"] = run_label;
    out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
  if (!out) return Status::Error("cannot write " + path);
  return Status::Ok();
}

Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) return Status::Error("cannot write " + path);
  return Status::Ok();
}

}  // namespace gpufrac::bench
