// Service-level objectives: "ttft_p95<=1000ms", "itl_mean<50ms", "request_throughput>=20",
// "error_rate<=0.01". Checked against a run's summary; the per-request ones (ttft, ttst, itl,
// latency, output_tokens_per_user) also define goodput: a request is good when it meets each
// threshold itself, whatever the statistic named.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace gpufrac::bench {

struct MetricsSummary;

enum class SloMetric {
  kTtft,
  kTtst,
  kItl,
  kIcl,
  kLatency,
  kOutputTokensPerUser,
  kRequestThroughput,
  kOutputTokenThroughput,
  kErrorRate,
};

struct Slo {
  std::string text;  // as the user wrote it
  SloMetric metric = SloMetric::kTtft;
  std::string stat;     // "p95", "mean", "min", "max"; empty for run-level metrics
  bool at_most = true;  // <= (or <) when true, >= (or >) when false
  bool strict = false;
  double threshold = 0;  // ms for time metrics
  bool per_request() const;
};

Status ParseSlo(std::string_view text, Slo* slo);
// The summary's value for the SLO's metric and statistic (NaN when there is no data).
double SloValue(const MetricsSummary& summary, const Slo& slo);
bool SloHolds(const MetricsSummary& summary, const Slo& slo);
bool Compare(double value, const Slo& slo);

}  // namespace gpufrac::bench
