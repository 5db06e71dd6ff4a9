// What the gateway measures per model and per replica, and how it is exported: Prometheus
// histograms and counters for /metrics, and a sliding window of recent TTFTs and queue waits from
// which the autoscaler reads its percentiles. Everything here lives on the gateway's one event
// loop thread, so nothing is locked.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace gpufrac::serve {

// A Prometheus histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends "<name>_bucket{labels,le=..}", "_sum" and "_count" lines.
  void Render(const std::string& name, const std::string& labels, std::string* out) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

Histogram LatencyHistogram();  // 1 ms to 60 s

// Recent samples within a time window, oldest dropped first; bounded in size.
class SlidingWindow {
 public:
  void Add(int64_t now_ns, double value);
  // Drops samples older than window_ns, then returns the p-th percentile (0-100), linear
  // interpolation between closest ranks; -1 when empty.
  double Percentile(int64_t now_ns, int64_t window_ns, double p);
  size_t Count(int64_t now_ns, int64_t window_ns);
  void Clear() { samples_.clear(); }

 private:
  void Expire(int64_t now_ns, int64_t window_ns);
  std::deque<std::pair<int64_t, double>> samples_;
  std::vector<double> scratch_;  // reused by Percentile: no allocation per tick
};

// Error kinds the gateway counts (label "kind").
enum class ErrorKind {
  kUpstreamConnect,  // could not reach a replica
  kUpstreamFailed,   // the replica broke the response (crash, reset, malformed)
  kUpstreamStatus,   // the replica answered 5xx
  kRejected,         // admission refused (429/503)
  kQueueTimeout,     // waited in the queue past its timeout
  kClientCancelled,  // the client went away
  kClientStalled,    // the client took nothing for client_write_timeout: dropped
  kBadRequest,       // 4xx the gateway answered itself
};
const char* ErrorKindName(ErrorKind kind);

struct ModelMetrics {
  ModelMetrics();
  uint64_t requests = 0;  // accepted for routing
  std::map<int, uint64_t> responses_by_code;
  std::map<ErrorKind, uint64_t> errors;
  Histogram ttft, itl, queue_wait, latency;
  SlidingWindow ttft_window, queue_wait_window;
  int64_t last_request_ns = 0;
};

struct ReplicaMetrics {
  ReplicaMetrics();
  Histogram ttft, itl;
  // Time each request sent here spent in the model's gateway queue just before (0: sent at once).
  Histogram queue_wait;
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t health_failures = 0;
};

// Label value escaping for the text format.
std::string EscapeLabel(const std::string& value);

}  // namespace gpufrac::serve
