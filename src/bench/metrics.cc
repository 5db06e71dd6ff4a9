#include "bench/metrics.h"

#include <algorithm>
#include <limits>

namespace gpufrac::bench {
namespace {
constexpr double kNsPerMs = 1e6;
double Ms(int64_t ns) { return static_cast<double>(ns) / kNsPerMs; }
}  // namespace

RequestMetrics ComputeRequestMetrics(const RequestRecord& r) {
  RequestMetrics m;
  m.latency_ms = Ms(r.end_ns - r.start_ns);
  if (r.content_ns.empty()) return m;
  m.ttft_ms = Ms(r.content_ns[0] - r.start_ns);
  if (r.content_ns.size() >= 2) m.ttst_ms = Ms(r.content_ns[1] - r.content_ns[0]);
  for (size_t i = 1; i < r.content_ns.size(); ++i) {
    m.icl_ms.push_back(Ms(r.content_ns[i] - r.content_ns[i - 1]));
  }
  int tokens = r.OutputTokens();
  if (tokens >= 2) {
    m.itl_ms = (m.latency_ms - *m.ttft_ms) / (tokens - 1);
    if (*m.itl_ms > 0) m.output_tokens_per_user = 1000.0 / *m.itl_ms;
  }
  return m;
}

bool RequestIsGood(const RequestRecord& record, const RequestMetrics& m,
                   const std::vector<Slo>& slos) {
  if (!record.ok()) return false;
  for (const Slo& slo : slos) {
    if (!slo.per_request()) continue;
    std::optional<double> value;
    switch (slo.metric) {
      case SloMetric::kTtft:
        value = m.ttft_ms;
        break;
      case SloMetric::kTtst:
        value = m.ttst_ms;
        break;
      case SloMetric::kItl:
        value = m.itl_ms;
        break;
      case SloMetric::kLatency:
        value = m.latency_ms;
        break;
      case SloMetric::kOutputTokensPerUser:
        value = m.output_tokens_per_user;
        break;
      default:
        break;
    }
    if (!value || !Compare(*value, slo)) return false;
  }
  return true;
}

MetricsSummary Summarize(const std::vector<RequestRecord>& records, const std::vector<Slo>& slos,
                         int workload) {
  MetricsSummary s;
  std::vector<double> ttft, ttst, latency, itl, icl, per_user, out_tokens, in_tokens, lag, queue;
  int64_t first_start = std::numeric_limits<int64_t>::max();
  int64_t last_end = std::numeric_limits<int64_t>::min();
  double total_output_tokens = 0;
  size_t usage_present = 0, prompt_usage_present = 0, words_counted = 0, embeddings = 0;
  bool any_per_request_slo =
      std::any_of(slos.begin(), slos.end(), [](const Slo& slo) { return slo.per_request(); });
  for (const RequestRecord& r : records) {
    if (workload >= 0 && r.workload != workload) continue;
    if (r.warmup) {
      ++s.warmup;
      continue;
    }
    // Still running when the grace period after the run ran out: the server never finished it,
    // so it fails like a timeout (and is also counted apart).
    if (r.error == ErrorKind::kCancelled) ++s.cancelled;
    ++s.measured;
    first_start = std::min(first_start, r.start_ns);
    // A cancelled request "ended" when the grace period ran out, not when the server answered:
    // counting that would stretch the window by the grace period and understate throughput.
    if (r.error != ErrorKind::kCancelled) last_end = std::max(last_end, r.end_ns);
    lag.push_back(Ms(r.start_ns - r.planned_ns));
    queue.push_back(Ms(r.dispatched_ns - r.planned_ns));
    if (!r.ok()) {
      ++s.failed;
      ++s.errors_by_kind[ErrorKindName(r.error)];
      if (s.first_error.empty()) s.first_error = r.error_message;
      continue;
    }
    ++s.ok;
    RequestMetrics m = ComputeRequestMetrics(r);
    latency.push_back(m.latency_ms);
    if (m.ttft_ms) ttft.push_back(*m.ttft_ms);
    if (m.ttst_ms) ttst.push_back(*m.ttst_ms);
    if (m.itl_ms) itl.push_back(*m.itl_ms);
    if (m.output_tokens_per_user) per_user.push_back(*m.output_tokens_per_user);
    icl.insert(icl.end(), m.icl_ms.begin(), m.icl_ms.end());
    int tokens = r.OutputTokens();
    out_tokens.push_back(tokens);
    total_output_tokens += tokens;
    if (r.embedding) {
      ++embeddings;  // no output tokens: nothing to count them from, no usage of them missing
    } else if (r.completion_tokens >= 0) {
      ++usage_present;
    } else if (r.response_words >= 0) {
      ++words_counted;
    }
    if (r.prompt_tokens >= 0) ++prompt_usage_present;
    in_tokens.push_back(r.prompt_tokens >= 0 ? r.prompt_tokens : r.prompt_words);
    if (any_per_request_slo && RequestIsGood(r, m, slos)) ++s.good;
  }
  if (s.measured > 0 && last_end > first_start) s.window_s = (last_end - first_start) / 1e9;
  if (s.window_s > 0) {
    s.request_throughput = s.ok / s.window_s;
    s.output_token_throughput = total_output_tokens / s.window_s;
    if (any_per_request_slo) s.goodput = s.good / s.window_s;
  }
  if (s.measured > 0) s.error_rate = static_cast<double>(s.failed) / s.measured;
  s.usage_missing = s.ok - embeddings - usage_present;
  // What the output token counts rest on, in the order OutputTokens() prefers them.
  const size_t events_counted = s.usage_missing - words_counted;
  s.output_token_source.clear();
  for (auto [n, name] : {std::pair{usage_present, "usage"},
                         {events_counted, "content events"},
                         {words_counted, "response words"}}) {
    if (n == 0) continue;
    if (!s.output_token_source.empty()) s.output_token_source += " + ";
    s.output_token_source += name;
  }
  if (s.output_token_source.empty()) {
    s.output_token_source = s.ok > 0 && embeddings == s.ok ? "none (embeddings)" : "usage";
  }
  s.input_token_source = prompt_usage_present == s.ok ? "usage"
                         : prompt_usage_present == 0  ? "prompt words"
                                                      : "usage + prompt words";
  // Per-request SLOs judge failures as the worst values, which needs percentiles other than the
  // reported ones (slo.cc): the samples are kept when such an SLO is asked.
  const bool keep = any_per_request_slo;
  s.ttft_ms = Describe(std::move(ttft), keep);
  s.ttst_ms = Describe(std::move(ttst), keep);
  s.latency_ms = Describe(std::move(latency), keep);
  s.itl_ms = Describe(std::move(itl), keep);
  s.icl_ms = Describe(std::move(icl));
  s.output_tokens_per_user = Describe(std::move(per_user), keep);
  s.output_tokens = Describe(std::move(out_tokens));
  s.input_tokens = Describe(std::move(in_tokens));
  s.schedule_lag_ms = Describe(std::move(lag));
  s.queue_wait_ms = Describe(std::move(queue));
  return s;
}

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone:
      return "none";
    case ErrorKind::kConnect:
      return "connect";
    case ErrorKind::kHttpStatus:
      return "http_status";
    case ErrorKind::kStreamError:
      return "stream_error";
    case ErrorKind::kProtocol:
      return "protocol";
    case ErrorKind::kClosed:
      return "connection_closed";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kCancelled:
      return "cancelled";
  }
  return "?";
}

}  // namespace gpufrac::bench
