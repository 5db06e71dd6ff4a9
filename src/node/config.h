// The agent's configuration: defaults, the YAML file, and its validation. Every refusal names the
// key's path and the reason ("api.max_body_bytes: must be between 1024 and 67108864"), so an
// operator can fix the file without reading code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace gpufrac::node {

enum class Placement { kBinPack, kSpread };

// What the NVML backstop does with a process on the agent's GPUs that holds more than its tenant's
// limit (it bypassed the interposer) or that belongs to no tenant.
enum class BackstopMode { kOff, kWarn, kKill };

// The longest burst_reclaim_deadline a config may set.
constexpr uint32_t kMaxBurstReclaimDeadlineMs = 600000;
// How long a client waits for POST /v1/tenants: a create may wait out the longest reclaim deadline,
// then the kill that follows it (a minute covers the kill's few seconds).
constexpr uint32_t kCreateTenantTimeoutMs = kMaxBurstReclaimDeadlineMs + 60000;

// The longest unix socket path: sun_path holds 108 bytes including the terminator.
constexpr size_t kMaxSocketPathBytes = 107;

struct NodeConfig {
  // Unix socket the API listens on (at most kMaxSocketPathBytes); created with mode `socket_mode`
  // (owner and group may call).
  std::string socket_path = "/run/gpufrac/node.sock";
  uint32_t socket_mode = 0660;
  // The socket's group: operators in it may call the API. Empty: the agent's primary group.
  std::string socket_group;
  // SQLite database (WAL) holding tenants across agent restarts.
  std::string state_path = "/var/lib/gpufrac/node.db";
  // libgpufrac.so preloaded into tenants; empty: next to the gpufrac binary.
  std::string interposer_path;
  Placement default_placement = Placement::kBinPack;
  // How long a deleted tenant gets between SIGTERM and SIGKILL, unless the request says.
  uint32_t grace_period_ms = 10000;
  // How long a tenant that borrowed memory above its request gets, after notice, to give it back
  // when another tenant's request needs it; then it is killed.
  uint32_t burst_reclaim_deadline_ms = 5000;  // at most kMaxBurstReclaimDeadlineMs
  // How often exited tenants and dead processes are reclaimed (the promise is 1 s).
  uint32_t reap_interval_ms = 100;
  // HTTP edge limits.
  uint64_t max_body_bytes = 1 << 20;
  uint32_t request_timeout_ms = 10000;  // a request not fully received by then gets 408
  uint32_t api_threads = 4;
  // Optional TCP listener, IP:PORT ("127.0.0.1:9400"), for Prometheus and remote callers; every
  // request on it must carry the bearer token read from tcp_token_file (required with it).
  std::string tcp_address;
  std::string tcp_token_file;
  // NVML backstop: how often per-process GPU memory is sampled, and what to do with offenders.
  BackstopMode backstop_mode = BackstopMode::kWarn;
  uint32_t backstop_interval_ms = 1000;
  // Per process: what NVML may count above what the ledger charged (the interposer charges a
  // context at GPUFRAC_CONTEXT_BYTES; a real driver's context may be larger).
  uint64_t backstop_tolerance_bytes = 256ull << 20;
};

// Loads `path` over the defaults. Refuses unknown keys, wrong types and impossible values.
Status LoadConfig(const std::string& path, NodeConfig* config);
// The same from YAML text (`origin` names the source in messages).
Status ParseConfig(const std::string& yaml, const std::string& origin, NodeConfig* config);

const char* PlacementName(Placement p);
bool ParsePlacement(const std::string& text, Placement* p);

const char* BackstopModeName(BackstopMode m);

}  // namespace gpufrac::node
