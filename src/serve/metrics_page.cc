// The gateway's /metrics page (Prometheus text format 0.0.4): per model, per replica, the
// autoscaler's figures and decisions. The series are listed in docs/serve.md.
#include <cstdio>

#include "bench/clock.h"
#include "serve/gateway.h"

namespace gpufrac::serve {
namespace {

class Page {
 public:
  void Family(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void Sample(const char* name, const std::string& labels, double value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", value);
    out_ += labels.empty() ? std::string(name) + " " + buf + "\n"
                           : std::string(name) + "{" + labels + "} " + buf + "\n";
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

std::string L(const std::string& model) { return "model=\"" + EscapeLabel(model) + "\""; }

}  // namespace

std::string Gateway::MetricsText() const {
  const int64_t now = bench::NowNs();
  Page p;
  p.Family("gpufrac_serve_requests_total", "counter", "Requests routed to a model");
  for (const auto& [n, m] : models_)
    p.Sample("gpufrac_serve_requests_total", L(n), m->metrics.requests);
  p.Family("gpufrac_serve_responses_total", "counter", "Responses by HTTP status");
  for (const auto& [n, m] : models_) {
    for (const auto& [code, count] : m->metrics.responses_by_code) {
      p.Sample("gpufrac_serve_responses_total", L(n) + ",code=\"" + std::to_string(code) + "\"",
               count);
    }
  }
  p.Family("gpufrac_serve_errors_total", "counter", "Failed or refused requests by kind");
  for (const auto& [n, m] : models_) {
    for (const auto& [kind, count] : m->metrics.errors) {
      p.Sample("gpufrac_serve_errors_total", L(n) + ",kind=\"" + ErrorKindName(kind) + "\"", count);
    }
  }
  p.Family("gpufrac_serve_in_flight", "gauge", "Requests being answered by a replica");
  for (const auto& [n, m] : models_) p.Sample("gpufrac_serve_in_flight", L(n), m->in_flight);
  p.Family("gpufrac_serve_queue_depth", "gauge", "Requests waiting for a replica slot");
  for (const auto& [n, m] : models_) p.Sample("gpufrac_serve_queue_depth", L(n), m->queue.size());
  struct Hist {
    const char* name;
    const char* help;
    const Histogram ModelMetrics::*field;
  };
  const Hist hists[] = {
      {"gpufrac_serve_ttft_seconds", "Arrival at the gateway to first content event",
       &ModelMetrics::ttft},
      {"gpufrac_serve_itl_seconds", "Gaps between content events", &ModelMetrics::itl},
      {"gpufrac_serve_queue_wait_seconds", "Arrival to dispatch to a replica",
       &ModelMetrics::queue_wait},
      {"gpufrac_serve_request_duration_seconds", "Arrival to the last byte of the response",
       &ModelMetrics::latency},
  };
  for (const Hist& h : hists) {
    p.Family(h.name, "histogram", h.help);
    for (const auto& [n, m] : models_) (m->metrics.*h.field).Render(h.name, L(n), &p.out());
  }
  p.Family("gpufrac_serve_ttft_p95_seconds", "gauge",
           "TTFT p95 over the autoscaler's window (absent: too few samples)");
  const int64_t window = spec_.autoscaler.window_ms * 1'000'000;
  for (const auto& [n, m] : models_) {
    const double p95 = m->metrics.ttft_window.Percentile(now, window, 95);
    if (p95 >= 0) p.Sample("gpufrac_serve_ttft_p95_seconds", L(n), p95 / 1e3);
  }
  p.Family("gpufrac_serve_desired_replicas", "gauge", "The autoscaler's replica count");
  for (const auto& [n, m] : models_) p.Sample("gpufrac_serve_desired_replicas", L(n), m->desired);
  p.Family("gpufrac_serve_replicas", "gauge", "Replicas by state");
  for (const auto& [n, m] : models_) {
    for (ReplicaState s : {ReplicaState::kStarting, ReplicaState::kReady, ReplicaState::kDraining,
                           ReplicaState::kStopping, ReplicaState::kFailed}) {
      int count = 0;
      for (const auto& r : m->replicas) count += r->state == s ? 1 : 0;
      p.Sample("gpufrac_serve_replicas", L(n) + ",state=\"" + ReplicaStateName(s) + "\"", count);
    }
  }
  p.Family("gpufrac_serve_scale_decisions_total", "counter", "Autoscaler decisions by direction");
  for (const auto& [n, m] : models_) {
    p.Sample("gpufrac_serve_scale_decisions_total", L(n) + ",direction=\"out\"", m->scale_outs);
    p.Sample("gpufrac_serve_scale_decisions_total", L(n) + ",direction=\"in\"", m->scale_ins);
  }
  p.Family("gpufrac_serve_preemptions_total", "counter",
           "Batch tenants deleted to make room for this model");
  for (const auto& [n, m] : models_)
    p.Sample("gpufrac_serve_preemptions_total", L(n), m->preemptions);
  p.Family("gpufrac_serve_replica_failures_total", "counter",
           "Replicas taken out after a crash or failed health checks");
  for (const auto& [n, m] : models_) {
    p.Sample("gpufrac_serve_replica_failures_total", L(n), m->replicas_failed);
  }
  // Per replica. Each family's samples form one group, as the text format requires.
  auto replica_label = [](const std::string& model, const Replica& r) {
    return L(model) + ",replica=\"" + EscapeLabel(r.tenant) + "\"";
  };
  struct Gauge {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const Replica&);
  };
  const Gauge gauges[] = {
      {"gpufrac_serve_replica_in_flight", "gauge", "Requests on a replica",
       [](const Replica& r) { return double(r.outstanding); }},
      {"gpufrac_serve_replica_pending_requests", "gauge",
       "Requests on a replica still waiting for their first content event (its own queue)",
       [](const Replica& r) { return double(r.pending); }},
      {"gpufrac_serve_replica_requests_total", "counter", "Requests sent to a replica",
       [](const Replica& r) { return double(r.metrics.requests); }},
      {"gpufrac_serve_replica_errors_total", "counter", "Broken or 5xx responses of a replica",
       [](const Replica& r) { return double(r.metrics.errors); }},
      {"gpufrac_serve_replica_up", "gauge", "1 while the replica is in rotation",
       [](const Replica& r) { return r.Routable() ? 1.0 : 0.0; }},
  };
  for (const Gauge& g : gauges) {
    p.Family(g.name, g.type, g.help);
    for (const auto& [n, m] : models_) {
      for (const auto& r : m->replicas) p.Sample(g.name, replica_label(n, *r), g.value(*r));
    }
  }
  struct ReplicaHist {
    const char* name;
    const char* help;
    const Histogram ReplicaMetrics::*field;
  };
  const ReplicaHist replica_hists[] = {
      {"gpufrac_serve_replica_ttft_seconds",
       "Arrival at the gateway to first content event, by replica", &ReplicaMetrics::ttft},
      {"gpufrac_serve_replica_itl_seconds", "Gaps between content events, by replica",
       &ReplicaMetrics::itl},
      {"gpufrac_serve_replica_queue_wait_seconds",
       "Time in the gateway queue of each request sent to the replica (0: sent at once)",
       &ReplicaMetrics::queue_wait},
  };
  for (const ReplicaHist& h : replica_hists) {
    p.Family(h.name, "histogram", h.help);
    for (const auto& [n, m] : models_) {
      for (const auto& r : m->replicas) {
        (r->metrics.*h.field).Render(h.name, replica_label(n, *r), &p.out());
      }
    }
  }
  p.Family("gpufrac_serve_reloads_total", "counter", "Deployment reloads by result");
  p.Sample("gpufrac_serve_reloads_total", "result=\"ok\"", reloads_);
  p.Sample("gpufrac_serve_reloads_total", "result=\"refused\"", reload_failures_);
  p.Family(
      "gpufrac_serve_accept_failures_total", "counter",
      "Connections the gateway could not accept (out of file descriptors), each retried later");
  p.Sample("gpufrac_serve_accept_failures_total", "", accept_failures_);
  p.Family("gpufrac_serve_gateway_errors_total", "counter",
           "Errors the gateway answered itself before routing, by status");
  for (const auto& [code, count] : local_responses_) {
    p.Sample("gpufrac_serve_gateway_errors_total", "code=\"" + std::to_string(code) + "\"", count);
  }
  return std::move(p.out());
}

}  // namespace gpufrac::serve
