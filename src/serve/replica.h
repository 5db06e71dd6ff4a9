// The gateway's view of one model and its replicas. Owned by the event loop thread: the router,
// the replica manager and the metrics page read and change them there, without locks.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "serve/autoscaler.h"
#include "serve/deploy.h"
#include "serve/serve_metrics.h"

namespace gpufrac::serve {

class Exchange;

enum class ReplicaState {
  kStarting,  // tenant being created or its health check not yet passed: never routed to
  kReady,     // in rotation
  kDraining,  // out of rotation; in-flight requests finish (up to the drain grace)
  kStopping,  // its tenant is being deleted
  kFailed,    // crashed, failed health checks, or never started; out at once, then deleted
};
const char* ReplicaStateName(ReplicaState state);

struct Replica {
  std::string tenant;  // the node agent's tenant id
  std::string model;
  uint16_t port = 0;
  bool stale = false;  // started from a spec a reload has since changed
  ReplicaState state = ReplicaState::kStarting;
  std::string reason;           // why it failed or stops
  bool creating = false;        // the agent call creating its tenant has not answered yet
  bool tenant_created = false;  // or may have been: it must be deleted by name
  int64_t tenant_created_ns = 0;
  bool deleting = false;    // a delete of its tenant is in flight
  int delete_failures = 0;  // deletes the agent did not confirm; retried with backoff
  int64_t delete_retry_ns = 0;
  bool probing = false;  // a health probe is in flight
  bool suspect = false;  // a request on it broke; out of rotation until a probe passes
  int health_failures = 0;
  int outstanding = 0;  // requests dispatched to it and not finished
  // Of those, the ones still waiting for their first content event (or, for a response that is
  // not an event stream, its head): the replica's own queue as the gateway can see it.
  int pending = 0;
  int64_t created_ns = 0, ready_ns = 0, state_since_ns = 0, next_probe_ns = 0;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::socket>> idle;  // keep-alive connections
  ReplicaMetrics metrics;

  bool Routable() const { return state == ReplicaState::kReady && !suspect; }
};

struct Model {
  ModelSpec spec;
  std::vector<std::shared_ptr<Replica>> replicas;
  std::deque<std::shared_ptr<Exchange>> queue;  // admitted, waiting for a replica slot
  ModelMetrics metrics;
  ScaleState scale;
  int desired = 0;
  int in_flight = 0;  // dispatched to a replica
  int next_seq = 1;
  bool removed = false;  // dropped by a reload: drains, then disappears
  int start_failures = 0;
  int64_t start_backoff_until_ns = 0;
  // Set when the agent refused a replica's spec (400: an unknown GPU, a size no GPU has, a
  // command it cannot run). No replica is started again until a reload; /health shows it.
  std::string config_error;
  int64_t last_decision_ns = 0;
  int64_t window_start_ns = 0;  // TTFT window restarts when capacity changes
  uint64_t scale_outs = 0, scale_ins = 0, preemptions = 0, replicas_failed = 0;
  std::string last_reason;

  int CountActive() const;  // starting + ready, not stale
  int CountReady() const;   // ready (stale included: it still serves)
};

}  // namespace gpufrac::serve
