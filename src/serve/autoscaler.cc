#include "serve/autoscaler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace gpufrac::serve {
namespace {

std::string Figures(const ScaleInputs& in, double target_inflight, const ModelSpec& m) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "ttft_p95=%.0fms (sla %lldms) load=%.0f over %d replicas (target %.1f each) "
                "queue_wait_p95=%.0fms",
                in.ttft_p95_ms, static_cast<long long>(m.sla.ttft_p95_ms), in.load, in.current,
                target_inflight, in.queue_wait_p95_ms);
  return buf;
}

bool CooledDown(int64_t now, int64_t last, int64_t cooldown) {
  return last < 0 || now - last >= cooldown;
}

}  // namespace

double TargetInflight(const ModelSpec& model, const AutoscalerSpec& autoscaler) {
  if (model.sla.inflight_per_replica > 0) return model.sla.inflight_per_replica;
  return std::max(1.0, model.admission.max_inflight_per_replica * autoscaler.scale_out_at);
}

ScaleDecision Decide(const ModelSpec& m, const AutoscalerSpec& a, const ScaleInputs& in,
                     ScaleState* st) {
  const double target = TargetInflight(m, a);
  ScaleDecision d;
  d.desired = std::clamp(in.current, m.min_replicas, m.max_replicas);
  if (d.desired != in.current) {
    d.direction = d.desired > in.current ? "out" : "in";
    d.reason = "replica count outside min_replicas/max_replicas";
    return d;
  }
  if (in.current == 0) {
    if (in.waiting_at_zero) {
      d.desired = 1;
      d.direction = "out";
      d.reason = "cold start: requests are waiting and no replica exists";
      st->last_out_ms = in.now_ms;
    }
    return d;
  }
  const double sla = static_cast<double>(m.sla.ttft_p95_ms);
  // While replicas asked for are still starting, latency figures describe the capacity without
  // them: only the load (counted now) may ask for more, or each cooldown would add one.
  const bool starting = in.ready < in.current;
  const bool ttft_high = !starting && in.ttft_p95_ms >= 0 && in.ttft_p95_ms >= a.scale_out_at * sla;
  const bool load_high = in.load > target * in.current;
  const bool queue_high = !starting && m.sla.max_queue_wait_ms > 0 && in.queue_wait_p95_ms >= 0 &&
                          in.queue_wait_p95_ms >= a.scale_out_at * m.sla.max_queue_wait_ms;
  if ((ttft_high || load_high || queue_high) && in.current < m.max_replicas) {
    st->low_since_ms = -1;
    if (!CooledDown(in.now_ms, st->last_out_ms, a.scale_out_cooldown_ms)) return d;
    // Enough replicas for the load at the target, at least one more.
    const int for_load = static_cast<int>(std::ceil(in.load / target));
    d.desired = std::min(m.max_replicas, std::max(in.current + 1, for_load));
    d.direction = "out";
    d.reason = std::string(ttft_high ? "ttft_p95 near the SLA; " : "") +
               (load_high ? "in-flight above target; " : "") +
               (queue_high ? "queue wait near the SLA; " : "") + Figures(in, target, m);
    st->last_out_ms = in.now_ms;
    return d;
  }
  // Scale to zero after a quiet period.
  if (m.scale_to_zero.enabled && m.min_replicas == 0 && in.load == 0 &&
      in.idle_ms >= m.scale_to_zero.idle_ms) {
    d.desired = 0;
    d.direction = "in";
    d.reason = "scale to zero: idle for " + std::to_string(in.idle_ms) + "ms";
    st->last_in_ms = in.now_ms;
    st->low_since_ms = -1;
    return d;
  }
  // Scale in when one replica fewer would still sit well below every target, stably.
  const bool ttft_low = in.ttft_p95_ms < 0 || in.ttft_p95_ms < a.scale_in_below * sla;
  const bool load_low =
      in.current > 1 && in.load <= a.scale_in_below * target * static_cast<double>(in.current - 1);
  if (!(ttft_low && load_low) || in.current <= m.min_replicas || in.ready < in.current) {
    st->low_since_ms = -1;
    return d;
  }
  if (st->low_since_ms < 0) st->low_since_ms = in.now_ms;
  if (in.now_ms - st->low_since_ms < a.scale_in_stable_ms) return d;
  if (!CooledDown(in.now_ms, st->last_in_ms, a.scale_in_cooldown_ms) ||
      !CooledDown(in.now_ms, st->last_out_ms, a.scale_in_cooldown_ms)) {
    return d;
  }
  d.desired = in.current - 1;
  d.direction = "in";
  d.reason = "load well below target for " + std::to_string(in.now_ms - st->low_since_ms) + "ms; " +
             Figures(in, target, m);
  st->last_in_ms = in.now_ms;
  st->low_since_ms = -1;
  return d;
}

}  // namespace gpufrac::serve
