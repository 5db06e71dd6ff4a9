// The deployment file of `gpufrac serve`: which models to serve, how to start one replica of each,
// the GPU share a replica gets, and the SLA the autoscaler holds it to. Parsed into plain structs
// at once; every refusal names the key's path ("models[1].sla.ttft_p95: ...").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace gpufrac::serve {

// The GPU share of one replica, passed to the node agent as the tenant's spec.
struct GpuShare {
  std::string memory;        // "0.25" (of the card) or "20GiB"
  std::string memory_limit;  // empty: the request
  double compute = -1;       // -1: the agent's default (the memory share)
  double compute_limit = -1;
  std::string compute_mode;  // "" | fair | strict
  bool batch = false;        // priority: batch replicas may be preempted for inference ones
  std::string gpu;           // "" | index | UUID prefix
  std::string placement;     // "" | binpack | spread
};

struct HealthCheck {
  std::string path = "/health";
  int64_t interval_ms = 1000;
  int64_t timeout_ms = 1000;
  int failures = 2;  // consecutive failures that take a ready replica out
};

struct Sla {
  int64_t ttft_p95_ms = 0;          // required
  double inflight_per_replica = 0;  // 0: not a scaling signal
  int64_t max_queue_wait_ms = 0;    // 0: not a scaling signal
};

struct Admission {
  int max_inflight_per_replica = 64;
  int max_queue = 256;
  int64_t queue_timeout_ms = 5000;
};

struct ScaleToZero {
  bool enabled = false;
  int64_t idle_ms = 300000;  // no request for this long: scale to zero
  int64_t hold_ms = 60000;   // requests arriving at zero wait this long for a cold start
};

struct ModelSpec {
  std::string name;
  std::vector<std::string> command;  // with {port} {host} {model} {replica} {gpu} placeholders
  HealthCheck health;
  int64_t start_timeout_ms = 300000;
  int64_t drain_grace_ms = 30000;
  // A request whose replica sends nothing for this long fails (error event, or a retry elsewhere
  // if nothing was sent to the client yet) instead of hanging; the replica is then probed.
  int64_t upstream_timeout_ms = 300000;
  GpuShare share;
  int min_replicas = 1;
  int max_replicas = 1;
  Sla sla;
  Admission admission;
  ScaleToZero scale_to_zero;

  // Whether a running replica started from `other` must be replaced to match this spec.
  bool SameReplica(const ModelSpec& other) const;
};

struct GatewaySpec {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  uint64_t max_body_bytes = 1 << 20;
  std::vector<std::string> api_keys;   // empty: no key needed
  int64_t request_timeout_ms = 30000;  // a client's request must arrive whole within this
  // A client that takes nothing of a response for this long is dropped (and its replica slot
  // freed): a stuck reader must not hold a replica.
  int64_t client_write_timeout_ms = 60000;
};

struct AutoscalerSpec {
  int64_t interval_ms = 1000;
  int64_t window_ms = 30000;  // sliding window of the TTFT p95
  int64_t scale_out_cooldown_ms = 10000;
  int64_t scale_in_cooldown_ms = 30000;
  int64_t scale_in_stable_ms = 60000;  // load well below target for this long before scaling in
  double scale_out_at = 0.8;           // TTFT p95 at this share of the target: scale out
  double scale_in_below = 0.5;         // ... under this share (and in-flight too): may scale in
  int min_samples = 5;                 // TTFT samples in the window before it is trusted
};

struct PreemptionSpec {
  bool enabled = true;
  int64_t grace_ms = 5000;  // SIGTERM-to-SIGKILL time given to a preempted batch tenant
};

struct DeploySpec {
  std::string node_socket = "/run/gpufrac/node.sock";
  GatewaySpec gateway;
  AutoscalerSpec autoscaler;
  PreemptionSpec preemption;
  std::vector<ModelSpec> models;

  const ModelSpec* Find(const std::string& name) const;
};

// What the command line (or the environment) sets over the deploy file. Kept by the gateway so
// that a reload applies it again: the file's own values for these never count while it is set.
struct DeployOverrides {
  std::string host;  // with port: --listen
  int port = -1;
  std::string node_socket;  // --node / GPUFRAC_NODE_SOCKET
  void ApplyTo(DeploySpec* spec) const;
};

// Parses YAML text; `origin` (the file name) prefixes every error message.
Status ParseDeploy(const std::string& yaml_text, const std::string& origin, DeploySpec* out);
Status LoadDeployFile(const std::string& path, DeploySpec* out);

// "IP:PORT" as the gateway binds it (gateway.listen, --listen): an IPv4 or IPv6 address, never a
// host name. The error says what is wrong with `text`, without naming where it came from.
Status ParseListenAddress(const std::string& text, std::string* host, uint16_t* port);

// A model's part of its replicas' tenant ids: tenant ids are 1-63 of [A-Za-z0-9._-], model names
// may hold anything printable, so others become '-' and the part stops at 40 characters.
std::string TenantSafeName(const std::string& model_name);

// The command of one replica with its placeholders filled in.
struct ReplicaVars {
  std::string host, model, replica;
  uint16_t port = 0;
};
std::vector<std::string> ExpandCommand(const std::vector<std::string>& tmpl, const ReplicaVars& v);

}  // namespace gpufrac::serve
