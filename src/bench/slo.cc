#include "bench/slo.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "bench/metrics.h"

namespace gpufrac::bench {
namespace {

struct MetricName {
  const char* name;
  SloMetric metric;
  bool is_time;
  bool run_level;
};
constexpr MetricName kMetrics[] = {
    {"ttft", SloMetric::kTtft, true, false},
    {"ttst", SloMetric::kTtst, true, false},
    {"itl", SloMetric::kItl, true, false},
    {"icl", SloMetric::kIcl, true, false},
    {"latency", SloMetric::kLatency, true, false},
    {"output_tokens_per_user", SloMetric::kOutputTokensPerUser, false, false},
    {"request_throughput", SloMetric::kRequestThroughput, false, true},
    {"output_token_throughput", SloMetric::kOutputTokenThroughput, false, true},
    {"error_rate", SloMetric::kErrorRate, false, true},
};

bool ValidStat(std::string_view stat) {
  if (stat == "mean" || stat == "avg" || stat == "min" || stat == "max") return true;
  if (stat.size() < 2 || stat[0] != 'p') return false;
  int p = 0;
  auto [ptr, ec] = std::from_chars(stat.data() + 1, stat.data() + stat.size(), p);
  if (ec != std::errc() || ptr != stat.data() + stat.size()) return false;
  for (int known : kPercentiles) {
    if (known == p) return true;
  }
  return false;
}

const Distribution* DistributionFor(const MetricsSummary& s, SloMetric metric) {
  switch (metric) {
    case SloMetric::kTtft:
      return &s.ttft_ms;
    case SloMetric::kTtst:
      return &s.ttst_ms;
    case SloMetric::kItl:
      return &s.itl_ms;
    case SloMetric::kIcl:
      return &s.icl_ms;
    case SloMetric::kLatency:
      return &s.latency_ms;
    case SloMetric::kOutputTokensPerUser:
      return &s.output_tokens_per_user;
    default:
      return nullptr;
  }
}

// The statistic over every measured request, a failed one counting as the worst value (it never
// got its token): a run with failures does not meet a per-request objective by leaving them out.
// So a mean, and the extreme on the bad side, are the worst value itself; a percentile p of all
// requests, with the failures (share f) at the bad end, is the successful requests' percentile
// p / (1 - f) for an at-most objective, (p - f) / (1 - f) for an at-least one, and the worst
// value once the failures alone fill the tail.
double WithFailuresAsWorst(const MetricsSummary& s, const Distribution& d, const Slo& slo) {
  const double worst = slo.at_most ? std::numeric_limits<double>::infinity()
                                   : -std::numeric_limits<double>::infinity();
  if (slo.stat == "mean" || slo.stat == (slo.at_most ? "max" : "min")) return worst;
  if (slo.stat == "min") return d.min;
  if (slo.stat == "max") return d.max;
  if (d.sorted.empty()) return worst;  // samples not kept: judge it failed rather than guess
  const double f = static_cast<double>(s.failed) / static_cast<double>(s.measured);
  const double p = std::stoi(slo.stat.substr(1)) / 100.0;
  const double q = slo.at_most ? p / (1 - f) : (p - f) / (1 - f);
  if (q < 0 || q > 1) return worst;
  return PercentileOfSorted(d.sorted, q * 100);
}

}  // namespace

bool Slo::per_request() const {
  return metric == SloMetric::kTtft || metric == SloMetric::kTtst || metric == SloMetric::kItl ||
         metric == SloMetric::kLatency || metric == SloMetric::kOutputTokensPerUser;
}

Status ParseSlo(std::string_view text, Slo* slo) {
  auto fail = [&](const std::string& why) {
    return Status::Error("bad SLO '" + std::string(text) + "': " + why +
                         " (expected e.g. ttft_p95<=1000ms)");
  };
  size_t op = text.find_first_of("<>");
  if (op == std::string_view::npos || op == 0) return fail("no <= or >=");
  Slo parsed;
  parsed.text = std::string(text);
  parsed.at_most = text[op] == '<';
  size_t value_at = op + 1;
  if (value_at < text.size() && text[value_at] == '=') {
    ++value_at;
  } else {
    parsed.strict = true;
  }
  std::string_view name = text.substr(0, op);
  const MetricName* metric = nullptr;
  for (const MetricName& m : kMetrics) {
    std::string_view candidate = m.name;
    if (m.run_level && name == candidate) {
      metric = &m;
      break;
    }
    if (!m.run_level && name.size() > candidate.size() + 1 &&
        name.substr(0, candidate.size()) == candidate && name[candidate.size()] == '_' &&
        ValidStat(name.substr(candidate.size() + 1))) {
      metric = &m;
      parsed.stat = std::string(name.substr(candidate.size() + 1));
      if (parsed.stat == "avg") parsed.stat = "mean";
      break;
    }
  }
  if (metric == nullptr) {
    return fail("unknown metric or statistic '" + std::string(name) + "'");
  }
  parsed.metric = metric->metric;
  std::string_view value_text = text.substr(value_at);
  double value = 0;
  auto [ptr, ec] = std::from_chars(value_text.data(), value_text.data() + value_text.size(), value);
  if (ec != std::errc() || value_text.empty()) return fail("no number after the comparison");
  std::string_view unit(ptr, value_text.data() + value_text.size() - ptr);
  if (metric->is_time) {
    if (unit == "ms" || unit.empty()) {
      parsed.threshold = value;
    } else if (unit == "s") {
      parsed.threshold = value * 1000;
    } else if (unit == "us") {
      parsed.threshold = value / 1000;
    } else {
      return fail("unknown time unit '" + std::string(unit) + "' (use us, ms or s)");
    }
  } else {
    if (!unit.empty()) return fail("unexpected unit '" + std::string(unit) + "'");
    parsed.threshold = value;
  }
  *slo = std::move(parsed);
  return Status::Ok();
}

double SloValue(const MetricsSummary& s, const Slo& slo) {
  switch (slo.metric) {
    case SloMetric::kRequestThroughput:
      return s.request_throughput;
    case SloMetric::kOutputTokenThroughput:
      return s.output_token_throughput;
    case SloMetric::kErrorRate:
      // Nothing measured (every request was warm-up, say) is no evidence of a low error rate.
      return s.measured > 0 ? s.error_rate : std::numeric_limits<double>::quiet_NaN();
    default:
      break;
  }
  const Distribution* d = DistributionFor(s, slo.metric);
  if (d == nullptr || d->count == 0) return std::numeric_limits<double>::quiet_NaN();
  if (slo.per_request() && s.failed > 0 && s.measured > 0) return WithFailuresAsWorst(s, *d, slo);
  if (slo.stat == "mean") return d->mean;
  if (slo.stat == "min") return d->min;
  if (slo.stat == "max") return d->max;
  return d->Percentile(std::stoi(slo.stat.substr(1)));
}

bool Compare(double value, const Slo& slo) {
  if (std::isnan(value)) return false;
  if (slo.at_most) return slo.strict ? value < slo.threshold : value <= slo.threshold;
  return slo.strict ? value > slo.threshold : value >= slo.threshold;
}

bool SloHolds(const MetricsSummary& summary, const Slo& slo) {
  // A run where nothing succeeded has no value (NaN) and fails every objective.
  return Compare(SloValue(summary, slo), slo);
}

}  // namespace gpufrac::bench
