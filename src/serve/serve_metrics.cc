#include "serve/serve_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace gpufrac::serve {
namespace {

// Enough recent samples for a stable p95 without unbounded memory under heavy load.
constexpr size_t kMaxWindowSamples = 20000;

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? FormatDouble(bounds_[i]) : "+Inf";
    *out += name + "_bucket{" + labels + sep + "le=\"" + le + "\"} " + std::to_string(cumulative) +
            "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  *out += name + "_sum" + braces + " " + FormatDouble(sum_) + "\n";
  *out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

Histogram LatencyHistogram() {
  return Histogram(
      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
}

void SlidingWindow::Add(int64_t now_ns, double value) {
  samples_.emplace_back(now_ns, value);
  if (samples_.size() > kMaxWindowSamples) samples_.pop_front();
}

void SlidingWindow::Expire(int64_t now_ns, int64_t window_ns) {
  while (!samples_.empty() && samples_.front().first < now_ns - window_ns) samples_.pop_front();
}

size_t SlidingWindow::Count(int64_t now_ns, int64_t window_ns) {
  Expire(now_ns, window_ns);
  return samples_.size();
}

double SlidingWindow::Percentile(int64_t now_ns, int64_t window_ns, double p) {
  Expire(now_ns, window_ns);
  if (samples_.empty()) return -1;
  // This runs on the gateway's event loop every autoscaler tick over up to kMaxWindowSamples
  // values: a full sort stalled every stream in flight for milliseconds, so select the two
  // closest ranks in linear time instead, in a buffer kept between calls.
  scratch_.clear();
  for (const auto& s : samples_) scratch_.push_back(s.second);
  const double rank = p / 100.0 * static_cast<double>(scratch_.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  auto lo_it = scratch_.begin() + static_cast<std::ptrdiff_t>(lo);
  std::nth_element(scratch_.begin(), lo_it, scratch_.end());
  const double lo_value = *lo_it;
  // Everything after lo_it is >= it, so the next rank is the smallest of those.
  const double hi_value =
      lo_it + 1 == scratch_.end() ? lo_value : *std::min_element(lo_it + 1, scratch_.end());
  return lo_value + (hi_value - lo_value) * (rank - static_cast<double>(lo));
}

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUpstreamConnect:
      return "upstream_connect";
    case ErrorKind::kUpstreamFailed:
      return "upstream_failed";
    case ErrorKind::kUpstreamStatus:
      return "upstream_status";
    case ErrorKind::kRejected:
      return "rejected";
    case ErrorKind::kQueueTimeout:
      return "queue_timeout";
    case ErrorKind::kClientCancelled:
      return "client_cancelled";
    case ErrorKind::kClientStalled:
      return "client_stalled";
    case ErrorKind::kBadRequest:
      return "bad_request";
  }
  return "unknown";
}

ModelMetrics::ModelMetrics()
    : ttft(LatencyHistogram()),
      itl(LatencyHistogram()),
      queue_wait(LatencyHistogram()),
      latency(LatencyHistogram()) {}

ReplicaMetrics::ReplicaMetrics()
    : ttft(LatencyHistogram()), itl(LatencyHistogram()), queue_wait(LatencyHistogram()) {}

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace gpufrac::serve
