#include "bench/sweep.h"

#include <cmath>
#include <cstdlib>
#include <fstream>

namespace gpufrac::bench {

const char* AxisName(Axis axis) { return axis == Axis::kConcurrency ? "concurrency" : "rate"; }

std::vector<Workload> AtPoint(const std::vector<Workload>& workloads, Axis axis, double value) {
  std::vector<Workload> out = workloads;
  for (Workload& w : out) {
    if (axis == Axis::kConcurrency) {
      w.load.mode = LoadMode::kClosedLoop;
      w.load.concurrency = static_cast<int>(std::lround(value));
    } else {
      // A closed-loop base's user count is not a cap: open loop runs uncapped unless the base
      // was already open loop with a --max-concurrency.
      if (w.load.mode == LoadMode::kClosedLoop) w.load.concurrency = 0;
      w.load.mode = LoadMode::kOpenLoop;
      w.load.rate = value;
    }
  }
  return out;
}

SlaSearchResult SearchLargestPassing(const SlaSearchSpec& spec,
                                     const std::function<bool(double)>& passes) {
  SlaSearchResult result;
  auto probe = [&](double value) {
    bool ok = passes(value);
    result.probes.push_back({value, ok});
    return ok;
  };
  double value = spec.integer ? std::max(1.0, std::round(spec.start)) : spec.start;
  if (!probe(value)) {
    result.first_failure = value;
    return result;
  }
  result.found = true;
  double pass = value, fail = 0;
  // Exponential phase: double until an SLO fails or the ceiling passes.
  while (pass < spec.max) {
    double next = std::min(pass * 2, spec.max);
    if (probe(next)) {
      pass = next;
    } else {
      fail = next;
      break;
    }
  }
  // Binary phase between the last pass and the first failure.
  while (fail > 0 && fail - pass > spec.precision) {
    double mid = (pass + fail) / 2;
    if (spec.integer) mid = std::floor(mid);
    if (mid <= pass || mid >= fail) break;
    if (probe(mid)) {
      pass = mid;
    } else {
      fail = mid;
    }
  }
  result.best = pass;
  result.first_failure = fail;
  return result;
}

std::string WritePlots(const std::string& dir, const std::vector<RunReport>& reports) {
  if (reports.empty()) return "no runs to plot";
  const std::string axis = reports.front().axis;
  {
    std::ofstream data(dir + "/sweep.dat");
    data << "# " << axis
         << " ttft_p50_ms ttft_p95_ms ttft_p99_ms request_throughput output_token_throughput\n";
    for (const RunReport& r : reports) {
      const Distribution& ttft = r.total.ttft_ms;
      auto value = [](double v) { return std::isfinite(v) ? v : 0.0; };
      data << r.axis_value << " " << value(ttft.Percentile(50)) << " " << value(ttft.Percentile(95))
           << " " << value(ttft.Percentile(99)) << " " << r.total.request_throughput << " "
           << r.total.output_token_throughput << "\n";
    }
  }
  std::string x_label = axis == "rate" ? "request rate (requests/s)" : "concurrency (users)";
  {
    std::ofstream script(dir + "/plots.gp");
    script << "set terminal svg size 800,500 dynamic\n"
           << "set datafile commentschars '#'\n"
           << "set grid\nset key left top\n"
           << "set xlabel '" << x_label << "'\n"
           << "set output '" << dir << "/ttft.svg'\n"
           << "set title 'Time to first token'\nset ylabel 'TTFT (ms)'\n"
           << "plot '" << dir << "/sweep.dat' using 1:2 with linespoints title 'p50', \\\n"
           << "     '' using 1:3 with linespoints title 'p95', \\\n"
           << "     '' using 1:4 with linespoints title 'p99'\n"
           << "set output '" << dir << "/throughput.svg'\n"
           << "set title 'Throughput'\nset ylabel 'output tokens/s'\nset y2label 'requests/s'\n"
           << "set ytics nomirror\nset y2tics\n"
           << "plot '" << dir
           << "/sweep.dat' using 1:6 with linespoints title 'output tokens/s', \\\n"
           << "     '' using 1:5 axes x1y2 with linespoints title 'requests/s'\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    return "gnuplot not found: plot script left at " + dir + "/plots.gp";
  }
  std::string command = "gnuplot '" + dir + "/plots.gp' 2>'" + dir + "/gnuplot.log'";
  if (std::system(command.c_str()) != 0) {
    return "gnuplot failed (see " + dir + "/gnuplot.log)";
  }
  return "plots written to " + dir + "/ttft.svg and " + dir + "/throughput.svg";
}

}  // namespace gpufrac::bench
