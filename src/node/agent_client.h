// gpufrac run's side of the agent: run a command as one of the agent's tenants. The agent places
// and admits an attach-only tenant (or the caller presents an existing one's token), attaches
// this process to it, and this process then execs the command under the interposer with the
// tenant's environment, so that its exit status is the command's own and the agent reclaims the
// tenant when it ends.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace gpufrac::node {

// The socket path an agent listens on by default (/run/gpufrac/node.sock).
std::string DefaultAgentSocket();

// True when an agent answers GET /v1/health on `socket` within a short timeout.
bool AgentAnswers(const std::string& socket);

// What `gpufrac run` asks the agent for; sizes and fractions as the user typed them.
struct AgentRunRequest {
  std::string memory;        // "0.5" or "20GiB"
  std::string memory_limit;  // empty: the request
  std::string gpu;           // empty: placement decides
  std::string name;          // empty: generated
  double compute = -1;       // < 0: the agent's default
  double compute_limit = -1;
  bool strict = false;
  bool batch = false;
};

// Creates the tenant (released when this process and what it starts have ended), then execs
// `command` as it. Returns only on failure, with the agent's or exec's reason.
Status RunThroughAgent(const std::string& socket, const AgentRunRequest& request,
                       const std::vector<std::string>& command);

// Joins the attach-only tenant holding `token`, then execs `command` as it. Returns only on
// failure.
Status JoinWithToken(const std::string& socket, const std::string& token,
                     const std::vector<std::string>& command);

}  // namespace gpufrac::node
