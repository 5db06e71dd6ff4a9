// GenAI-Perf/AIPerf metrics from request records. Definitions (per successful request):
//   TTFT      = first content event arrival - request start
//   TTST      = second content event arrival - first content event arrival
//   latency   = last response bytes arrival - request start
//   ITL       = (latency - TTFT) / (output tokens - 1), for requests with >= 2 output tokens
//   ICL       = gaps between consecutive content events (all gaps of all requests)
//   output tokens per user = 1 / ITL (tokens/s)
// Run level: request throughput = ok requests / window, output token throughput = their output
// tokens / window, where window = last end - first start of the measured requests; goodput = ok
// requests meeting every per-request SLO / window. Failed requests never count as good;
// warm-up and cancelled requests are left out.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/record.h"
#include "bench/slo.h"
#include "bench/stats.h"

namespace gpufrac::bench {

// The per-request values behind the distributions; unset when undefined for the request.
struct RequestMetrics {
  std::optional<double> ttft_ms, ttst_ms, itl_ms, output_tokens_per_user;
  double latency_ms = 0;
  std::vector<double> icl_ms;
};
RequestMetrics ComputeRequestMetrics(const RequestRecord& record);
bool RequestIsGood(const RequestRecord& record, const RequestMetrics& metrics,
                   const std::vector<Slo>& slos);

struct MetricsSummary {
  size_t measured = 0;  // requests counted (ok + failed)
  size_t ok = 0;
  size_t failed = 0;
  size_t cancelled = 0;
  size_t warmup = 0;
  std::map<std::string, size_t> errors_by_kind;
  std::string first_error;  // one example message
  double window_s = 0;
  double request_throughput = 0;       // requests/s
  double output_token_throughput = 0;  // tokens/s
  std::optional<double> goodput;       // good requests/s, when per-request SLOs were given
  size_t good = 0;
  double error_rate = 0;
  Distribution ttft_ms, ttst_ms, latency_ms, itl_ms, icl_ms, output_tokens_per_user;
  Distribution output_tokens, input_tokens;
  Distribution schedule_lag_ms;  // start - planned: how late requests left
  Distribution queue_wait_ms;    // dispatched - planned: waiting for a concurrency slot
  // Ok requests with output tokens (not embeddings) whose server reported no usage of them.
  size_t usage_missing = 0;
  // "usage", "content events", "response words", a mix ("usage + content events"), or
  // "none (embeddings)" when every request was an embedding.
  std::string output_token_source;
  std::string input_token_source;  // "usage", "prompt words", or both
};

// Summarizes the records of one workload (workload >= 0) or all of them (-1).
MetricsSummary Summarize(const std::vector<RequestRecord>& records, const std::vector<Slo>& slos,
                         int workload = -1);

}  // namespace gpufrac::bench
