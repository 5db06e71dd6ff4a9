#include "bench/bench_cli.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "bench/loadgen.h"
#include "bench/report.h"
#include "bench/sweep.h"
#include "bench/workload_file.h"

namespace gpufrac::bench {
namespace {

struct Flags {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  std::string endpoint = "chat";
  bool no_stream = false;
  std::string api_key;
  std::string tls_ca;
  bool insecure = false;
  std::vector<double> concurrency;
  std::vector<double> rate;
  std::string arrival = "poisson";
  double burstiness = 1;
  int max_concurrency = 0;
  int64_t requests = -1;
  std::string duration;
  int64_t warmup_requests = 0;
  std::string warmup;
  std::string ramp_up;
  double input_mean = 128, input_stddev = 0, output_mean = 128, output_stddev = 0;
  std::string input_file;
  std::string corpus;
  std::string extra_body;
  std::vector<std::string> slos;
  std::string sla_search;
  double sla_start = 1, sla_max = 1024, sla_precision = 0;
  std::string workload_file;
  std::string output_dir;
  bool json = false;
  std::string timeout = "600s";
  std::string grace = "30s";
  uint64_t seed = 1;
  bool progress = false, no_progress = false;
  bool busy_poll = false;
};

[[noreturn]] void UsageError(const std::string& message) {
  throw CLI::ValidationError("bench", message);
}

// The flags that shape the one workload the command line describes. A workload file gives each of
// its workloads all of this itself, so with --workload they would have no effect: refused, rather
// than dropped without a word.
constexpr const char* kReplacedByWorkloadFile[] = {"--endpoint",
                                                   "--no-stream",
                                                   "--concurrency",
                                                   "--rate",
                                                   "--arrival",
                                                   "--burstiness",
                                                   "--max-concurrency",
                                                   "--requests",
                                                   "--duration",
                                                   "--warmup-requests",
                                                   "--warmup",
                                                   "--ramp-up",
                                                   "--input-tokens-mean",
                                                   "--input-tokens-stddev",
                                                   "--output-tokens-mean",
                                                   "--output-tokens-stddev",
                                                   "--input-file",
                                                   "--extra-body"};

void RefuseFlagsTheWorkloadFileReplaces(const CLI::App& cmd, const Flags& f) {
  if (f.workload_file.empty()) return;
  for (const char* flag : kReplacedByWorkloadFile) {
    if (cmd.count(flag) > 0) {
      UsageError(std::string(flag) +
                 " cannot be combined with --workload: the workload file sets each workload's "
                 "load (put it there)");
    }
  }
}

double DurationOrDie(const std::string& flag, const std::string& text) {
  double seconds = 0;
  Status s = ParseDuration(text, &seconds);
  if (!s.ok()) UsageError(flag + ": " + s.message());
  return seconds;
}

std::vector<std::string> CorpusWords(const Flags& f) {
  if (f.corpus.empty()) return SplitWords(BuiltinCorpus());
  std::string text;
  Status s = LoadTextFile(f.corpus, &text);
  if (!s.ok()) UsageError("--corpus: " + s.message());
  try {
    (void)nlohmann::json(text).dump();  // prompts are sent as JSON strings: UTF-8 only
  } catch (const nlohmann::json::type_error&) {
    UsageError("--corpus: " + f.corpus + " is not UTF-8 text");
  }
  std::vector<std::string> words = SplitWords(text);
  if (words.empty()) UsageError("--corpus: " + f.corpus + " has no words");
  return words;
}

// The workloads described by the flags (or the workload file), before a sweep axis is applied.
std::vector<Workload> BuildWorkloads(const Flags& f) {
  std::vector<std::string> words = CorpusWords(f);
  if (!f.workload_file.empty()) {
    // The target flags (and their environment variables) are what a workload that names no target
    // of its own gets; they used to be dropped without a word.
    WorkloadDefaults defaults;
    defaults.url = f.url;
    defaults.model = f.model;
    defaults.api_key = f.api_key;
    defaults.tls_ca = f.tls_ca;
    defaults.insecure = f.insecure;
    defaults.timeout_s = DurationOrDie("--timeout", f.timeout);
    std::vector<Workload> workloads;
    Status s = LoadWorkloadFile(f.workload_file, words, defaults, &workloads);
    if (!s.ok()) UsageError(s.message());
    return workloads;
  }
  Workload w;
  w.name = "default";
  if (Status s = ParseTargetUrl(f.url, &w.target); !s.ok()) UsageError("--url: " + s.message());
  w.target.api_key = f.api_key;
  w.target.ca_file = f.tls_ca;
  w.target.insecure = f.insecure;
  if (f.model.empty()) UsageError("--model is required (or give --workload FILE)");
  w.request.model = f.model;
  if (Status s = ParseEndpoint(f.endpoint, &w.request.endpoint); !s.ok()) {
    UsageError("--endpoint: " + s.message());
  }
  w.request.stream = !f.no_stream;
  if (!f.extra_body.empty()) {
    w.request.extra_body = nlohmann::json::parse(f.extra_body, nullptr, false);
    if (w.request.extra_body.is_discarded() || !w.request.extra_body.is_object()) {
      UsageError("--extra-body must be a JSON object, e.g. '{\"ignore_eos\":true}'");
    }
  }
  LengthShape output{f.output_mean, f.output_stddev};
  if (!f.input_file.empty()) {
    std::unique_ptr<PromptSource> source;
    if (Status s = LoadPromptsFile(f.input_file, output, &source); !s.ok()) {
      UsageError("--input-file: " + s.message());
    }
    w.prompts = std::move(source);
  } else {
    w.prompts = MakeSyntheticPrompts(std::move(words), {f.input_mean, f.input_stddev}, output);
  }
  LoadSpec& load = w.load;
  if (Status s = ParseArrival(f.arrival, &load.arrival); !s.ok()) {
    UsageError("--arrival: " + s.message());
  }
  load.burstiness = f.burstiness;
  if (!f.duration.empty()) load.duration_s = DurationOrDie("--duration", f.duration);
  if (f.requests >= 0) {
    load.requests = f.requests;
  } else if (f.duration.empty()) {
    load.requests = 100;
  }
  if (f.requests >= 0 && !f.duration.empty()) {
    UsageError("give --requests or --duration, not both");
  }
  load.warmup_requests = f.warmup_requests;
  if (!f.warmup.empty()) load.warmup_s = DurationOrDie("--warmup", f.warmup);
  if (!f.ramp_up.empty()) load.ramp_up_s = DurationOrDie("--ramp-up", f.ramp_up);
  w.timeout_s = DurationOrDie("--timeout", f.timeout);
  if (!f.rate.empty() || f.sla_search == "rate") {
    load.mode = LoadMode::kOpenLoop;
    load.rate = f.rate.empty() ? f.sla_start : f.rate.front();
    load.concurrency = f.max_concurrency;
  } else {
    load.mode = LoadMode::kClosedLoop;
    load.concurrency = f.concurrency.empty() ? 1 : static_cast<int>(f.concurrency.front());
  }
  if (Status s = ValidateWorkload(w); !s.ok()) UsageError(s.message());
  return {w};
}

class Outputs {
 public:
  Outputs(const Flags& f) : dir_(f.output_dir), json_(f.json) {
    if (dir_.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) UsageError("--output-dir: cannot create " + dir_ + ": " + ec.message());
    std::filesystem::remove(dir_ + "/requests.jsonl", ec);
  }

  void AddRun(const RunResult& result, const RunReport& report, bool streaming) {
    if (!json_) std::cout << FormatConsole(report, streaming) << std::flush;
    reports_.push_back(report);
    if (dir_.empty()) return;
    Check(AppendRequestsJsonl(dir_ + "/requests.jsonl", result, report.label));
  }

  void Finish(nlohmann::json extra) {
    nlohmann::json runs = nlohmann::json::array();
    for (const RunReport& r : reports_) runs.push_back(ReportJson(r));
    nlohmann::json summary = reports_.size() == 1 ? runs[0] : nlohmann::json{{"runs", runs}};
    for (auto& [key, value] : extra.items()) summary[key] = value;
    // Server error messages are quoted in the summary and need not be valid UTF-8.
    const std::string text = summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    if (json_) std::cout << text << std::endl;
    if (dir_.empty()) return;
    Check(WriteTextFile(dir_ + "/summary.json", text + "\n"));
    Check(WriteTextFile(dir_ + "/summary.csv", SummaryCsv(reports_.back().total)));
    if (reports_.size() > 1) {
      Check(WriteTextFile(dir_ + "/sweep.csv", SweepCsv(reports_)));
      std::cerr << "gpufrac bench: " << WritePlots(dir_, reports_) << "\n";
    }
  }

 private:
  void Check(const Status& s) {
    if (!s.ok()) std::cerr << "gpufrac bench: error: " << s.message() << "\n";
  }
  std::string dir_;
  bool json_;
  std::vector<RunReport> reports_;
};

int Run(const Flags& f) {
  if (!f.concurrency.empty() && !f.rate.empty()) {
    UsageError("give --concurrency (closed loop) or --rate (open loop), not both");
  }
  for (double c : f.concurrency) {
    if (c < 1 || c != std::floor(c)) UsageError("--concurrency values must be whole numbers >= 1");
  }
  for (double r : f.rate) {
    if (!(r > 0)) UsageError("--rate values must be positive");
    if (r > 1e6) UsageError("--rate values must be at most 1000000 per second");
  }
  if (f.sla_search == "rate" && f.sla_max > 1e6) {
    UsageError("--sla-max must be at most 1000000 requests per second for a rate search");
  }
  std::vector<Slo> slos;
  for (const std::string& text : f.slos) {
    Slo slo;
    if (Status s = ParseSlo(text, &slo); !s.ok()) UsageError("--slo: " + s.message());
    slos.push_back(slo);
  }
  Axis axis = f.rate.empty() ? Axis::kConcurrency : Axis::kRate;
  if (!f.sla_search.empty()) {
    if (f.sla_search != "concurrency" && f.sla_search != "rate") {
      UsageError("--sla-search must be concurrency or rate");
    }
    if (slos.empty()) UsageError("--sla-search needs at least one --slo");
    axis = f.sla_search == "rate" ? Axis::kRate : Axis::kConcurrency;
    if (!(f.sla_start > 0) || f.sla_max < f.sla_start) {
      UsageError("--sla-start must be positive and at most --sla-max");
    }
  }
  std::vector<Workload> base = BuildWorkloads(f);
  RunOptions options;
  options.seed = f.seed;
  options.grace_s = DurationOrDie("--grace", f.grace);
  options.busy_poll = f.busy_poll;
  Outputs outputs(f);
  bool streaming = base.front().request.stream;
  bool every_request_failed = false;  // in some run: nothing measured or nothing succeeded

  auto run_point = [&](double value, bool apply_axis) {
    std::vector<Workload> workloads = apply_axis ? AtPoint(base, axis, value) : base;
    bool long_run = false;
    for (const Workload& w : workloads) long_run |= w.load.duration_s + w.load.warmup_s > 3;
    options.progress = !f.no_progress && (f.progress || (long_run && isatty(STDERR_FILENO)));
    RunResult result = RunLoad(workloads, options);
    RunReport report = f.workload_file.empty() ? MakeReport(result, slos, AxisName(axis), value)
                                               : MakeReport(result, slos, "workloads",
                                                            static_cast<double>(workloads.size()));
    if (!f.workload_file.empty()) report.label = "workload file " + f.workload_file;
    outputs.AddRun(result, report, streaming);
    if (report.total.measured > 0 && report.total.ok == 0) {
      std::cerr << "gpufrac bench: every request failed (" << report.total.first_error << ")\n";
      every_request_failed = true;
    } else if (report.total.measured == 0) {
      std::cerr << "gpufrac bench: no request was measured (" << report.total.warmup
                << " warm-up); give a longer run or less warm-up\n";
      every_request_failed = true;
    }
    return report;
  };

  if (!f.sla_search.empty()) {
    SlaSearchSpec spec;
    spec.integer = axis == Axis::kConcurrency;
    spec.start = f.sla_start;
    spec.max = f.sla_max;
    spec.precision = f.sla_precision > 0 ? f.sla_precision : (spec.integer ? 1 : 0.05 * spec.start);
    SlaSearchResult found = SearchLargestPassing(spec, [&](double value) {
      RunReport report = run_point(value, true);
      std::cerr << "gpufrac bench: SLA probe " << AxisName(axis) << "=" << value << ": "
                << (report.slos_met() ? "SLOs met" : "SLOs missed") << "\n";
      return report.slos_met();
    });
    nlohmann::json sla = {{"axis", AxisName(axis)},
                          {"found", found.found},
                          {"best", found.best},
                          {"first_failure", found.first_failure},
                          {"precision", spec.precision}};
    for (const SlaProbe& p : found.probes) {
      sla["probes"].push_back({{"value", p.value}, {"passed", p.passed}});
    }
    outputs.Finish({{"sla_search", sla}});
    if (!found.found) {
      std::cout << "SLA search: the SLOs fail even at " << AxisName(axis) << " " << spec.start
                << "\n";
      return 1;
    }
    std::cout << "SLA search: largest " << AxisName(axis) << " meeting every SLO: " << found.best
              << (found.first_failure > 0
                      ? " (fails at " + std::to_string(found.first_failure) + ")"
                      : " (the ceiling --sla-max; not reached a failure)")
              << "\n";
    return 0;
  }

  std::vector<double> points = axis == Axis::kRate ? f.rate : f.concurrency;
  bool all_met = true;
  if (points.size() <= 1 || !f.workload_file.empty()) {
    if (points.size() > 1) UsageError("sweeps are not supported with --workload");
    double value = points.empty() ? base.front().load.concurrency : points.front();
    all_met = run_point(value, !points.empty() && f.workload_file.empty()).slos_met();
  } else {
    for (double value : points) all_met &= run_point(value, true).slos_met();
  }
  outputs.Finish(nlohmann::json::object());
  if (every_request_failed) return 1;
  return slos.empty() || all_met ? 0 : 1;
}

}  // namespace

CLI::App* AddBenchSubcommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<Flags>();
  Flags& f = *flags;
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load-test an OpenAI-compatible server with GenAI-Perf-comparable metrics");
  cmd->add_option("--url", f.url,
                  "Server base URL (http://host:port; default http://127.0.0.1:8000); with "
                  "--workload, for workloads that give no url")
      ->envname("GPUFRAC_BENCH_URL");
  cmd->add_option("--model", f.model,
                  "Model name to request; with --workload, for workloads that give no model")
      ->envname("GPUFRAC_BENCH_MODEL");
  cmd->add_option("--endpoint", f.endpoint, "chat, completions or embeddings");
  cmd->add_flag("--no-stream", f.no_stream, "Ask for whole responses instead of SSE streams");
  cmd->add_option("--api-key", f.api_key, "Sent as 'Authorization: Bearer KEY'")
      ->envname("OPENAI_API_KEY");
  cmd->add_option("--tls-ca", f.tls_ca, "https: PEM file of CAs to trust (default: the system's)")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--insecure", f.insecure, "https: do not verify the server's certificate");
  cmd->add_option("--concurrency", f.concurrency,
                  "Closed loop: concurrent users; a comma list sweeps")
      ->delimiter(',');
  cmd->add_option("--rate", f.rate, "Open loop: requests per second; a comma list sweeps")
      ->delimiter(',');
  cmd->add_option("--arrival", f.arrival, "Open-loop arrivals: constant, poisson or gamma");
  cmd->add_option("--burstiness", f.burstiness, "Gamma shape (1 = Poisson; lower = burstier)");
  cmd->add_option("--max-concurrency", f.max_concurrency, "Open loop: cap on requests in flight")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--requests", f.requests, "Measured requests per run (default 100)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--duration", f.duration, "Measured time per run, e.g. 30s (instead of count)");
  cmd->add_option("--warmup-requests", f.warmup_requests, "Requests excluded at the start")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--warmup", f.warmup, "Time excluded at the start, e.g. 5s");
  cmd->add_option("--ramp-up", f.ramp_up,
                  "Closed loop: start users evenly over this time, e.g. 2s (default: at once)");
  // Lengths are whole numbers of words or tokens: a million is far beyond any context window.
  const CLI::Range length(0.0, kMaxLength);
  cmd->add_option("--input-tokens-mean", f.input_mean, "Synthetic prompt length (words)")
      ->check(CLI::PositiveNumber & length);
  cmd->add_option("--input-tokens-stddev", f.input_stddev, "Its standard deviation")->check(length);
  cmd->add_option("--output-tokens-mean", f.output_mean,
                  "Requested output length via max_tokens (0: send none)")
      ->check(length);
  cmd->add_option("--output-tokens-stddev", f.output_stddev, "Its standard deviation")
      ->check(length);
  cmd->add_option("--input-file", f.input_file, "JSONL prompts ({\"text\"|\"messages\", ...})");
  cmd->add_option("--corpus", f.corpus, "Text file to cut synthetic prompts from");
  cmd->add_option("--extra-body", f.extra_body,
                  "JSON object merged into every request body, e.g. '{\"ignore_eos\":true}'");
  cmd->add_option("--slo", f.slos, "Objective such as ttft_p95<=1000ms (repeatable)");
  cmd->add_option("--sla-search", f.sla_search,
                  "Find the largest concurrency or rate meeting every --slo");
  cmd->add_option("--sla-start", f.sla_start, "SLA search: first value probed");
  cmd->add_option("--sla-max", f.sla_max, "SLA search: ceiling");
  cmd->add_option("--sla-precision", f.sla_precision,
                  "SLA search: stop when pass and fail are this close (default 1 / 5% of start)");
  cmd->add_option("--workload", f.workload_file,
                  "YAML file with several workloads at once (it replaces the load flags)");
  cmd->add_option("--output-dir", f.output_dir,
                  "Write summary.json, summary.csv, requests.jsonl (and sweep.csv, plots) here");
  cmd->add_flag("--json", f.json, "Print the JSON summary instead of the table");
  cmd->add_option("--timeout", f.timeout, "Per-request timeout, e.g. 600s");
  cmd->add_option("--grace", f.grace, "Wait for requests in flight at the end, e.g. 30s");
  cmd->add_option("--seed", f.seed, "Random seed for prompts and arrivals");
  cmd->add_flag("--progress", f.progress, "Always show the progress line");
  cmd->add_flag("--no-progress", f.no_progress, "Never show the progress line");
  cmd->add_flag("--busy-poll", f.busy_poll,
                "Spin on the sockets instead of sleeping: timestamps without a wake-up's delay, "
                "for one full core");
  cmd->callback([flags, exit_code, cmd] {
    RefuseFlagsTheWorkloadFileReplaces(*cmd, *flags);
    *exit_code = Run(*flags);
  });
  return cmd;
}

}  // namespace gpufrac::bench
