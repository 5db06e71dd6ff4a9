// The load generator's public interface: describe one or more workloads (target, endpoint, prompts,
// load shape), run them together on one event loop, get back a record of every request.
//
//   gpufrac::bench::Workload w;
//   ParseTargetUrl("http://127.0.0.1:8000", &w.target);
//   w.request.model = "m";
//   w.prompts = MakeSyntheticPrompts(SplitWords(BuiltinCorpus()), {128, 0}, {64, 0});
//   w.load.concurrency = 8; w.load.requests = 200;
//   RunResult result = RunLoad({w}, RunOptions{});
//   MetricsSummary summary = Summarize(result.records, {});
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/metrics.h"
#include "bench/openai_protocol.h"
#include "bench/prompts.h"
#include "bench/record.h"
#include "bench/transport.h"

namespace gpufrac::bench {

enum class LoadMode { kClosedLoop, kOpenLoop };
enum class Arrival { kConstant, kPoisson, kGamma };
Status ParseArrival(std::string_view text, Arrival* arrival);

struct LoadSpec {
  LoadMode mode = LoadMode::kClosedLoop;
  int concurrency = 1;  // closed loop: users; open loop: cap on requests in flight (0: none)
  double rate = 0;      // open loop: requests per second
  Arrival arrival = Arrival::kPoisson;
  double burstiness = 1;  // gamma shape: < 1 burstier than Poisson, > 1 more regular
  int64_t requests = 0;   // measured requests; 0: run for duration_s
  double duration_s = 0;  // measured time after warm-up
  int64_t warmup_requests = 0;
  double warmup_s = 0;
  // Closed loop: users start evenly spread over this time instead of all at once, so that a
  // server with fixed timings does not see every stream in lock-step forever.
  double ramp_up_s = 0;
};

struct Workload {
  std::string name = "default";
  Target target;
  RequestOptions request;
  std::shared_ptr<PromptSource> prompts;
  LoadSpec load;
  double timeout_s = 600;  // per request
};

struct RunOptions {
  uint64_t seed = 1;
  double grace_s = 30;    // how long to wait for requests in flight after the last was sent
  bool progress = false;  // a live progress line on stderr
  // Spin on the event loop instead of sleeping in epoll_wait (see EventLoop): reads are timestamped
  // without a wake-up's delay, at the cost of one full core while the run lasts.
  bool busy_poll = false;
};

struct RunResult {
  std::vector<RequestRecord> records;  // every request, warm-up and cancelled ones included
  std::vector<std::string> workload_names;
  int64_t start_ns = 0, end_ns = 0;
  uint64_t connections_opened = 0;
  // Open loop with a cap, bounded by duration: requests still queued for a slot at the end.
  size_t unsent = 0;
};

// Checks a workload before running it; the message names the problem.
Status ValidateWorkload(const Workload& workload);
RunResult RunLoad(const std::vector<Workload>& workloads, const RunOptions& options);

}  // namespace gpufrac::bench
