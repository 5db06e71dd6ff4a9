// The autoscaler's decision for one model, as a pure function: figures in, desired replica count
// and the reason (with the figures that caused it) out. The replica manager feeds it every
// autoscaler interval and carries its state; tests drive it with made-up figures.
#pragma once

#include <cstdint>
#include <string>

#include "serve/deploy.h"

namespace gpufrac::serve {

struct ScaleInputs {
  int64_t now_ms = 0;
  int current = 0;          // replicas counted as capacity: starting + ready (not draining)
  int ready = 0;            // of which ready
  double ttft_p95_ms = -1;  // over the window since the last capacity change; -1: too few samples
  double load = 0;          // requests in flight + queued, now
  double queue_wait_p95_ms = -1;
  int64_t idle_ms = 0;           // since the last request arrived
  bool waiting_at_zero = false;  // requests are held while no replica exists
};

// What the autoscaler remembers between decisions.
struct ScaleState {
  int64_t last_out_ms = -1;
  int64_t last_in_ms = -1;
  int64_t low_since_ms = -1;  // since when the load has been well below target; -1: it is not
};

struct ScaleDecision {
  int desired = 0;
  std::string direction;  // "out", "in", "" (hold)
  std::string reason;     // with the figures, for the log
};

// The in-flight requests per replica the model is sized for: the SLA's target when given, else a
// share of the admission limit.
double TargetInflight(const ModelSpec& model, const AutoscalerSpec& autoscaler);

ScaleDecision Decide(const ModelSpec& model, const AutoscalerSpec& autoscaler,
                     const ScaleInputs& in, ScaleState* state);

}  // namespace gpufrac::serve
