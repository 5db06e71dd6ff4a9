// The node agent as gpufrac serve needs it: create a replica's tenant with its GPU share, delete
// it, list the host's tenants. Blocking calls over the agent's unix socket (docs/api.md); the
// replica manager makes them on worker threads, never on the gateway's event loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "serve/deploy.h"

namespace gpufrac::serve {

struct TenantInfo {
  std::string id;
  std::string state;  // running | stopping | exited
  bool batch = false;
  int gpu = -1;
  int64_t created_ms = 0;
  int pid = 0;
  std::string reason;
  uint64_t committed = 0;  // memory the GPU has promised it: max(used, request)
};

struct GpuRoom {
  int index = -1;
  std::string uuid;
  uint64_t total = 0;
  uint64_t free = 0;  // total - committed: what placement may still give out
};

class NodeClient {
 public:
  explicit NodeClient(std::string socket_path) : socket_(std::move(socket_path)) {}

  // Creates tenant `name` running `command` with `share`. *conflict is set when the agent
  // answered 409 (it does not fit now, or the name is taken), the case preemption can help with.
  // *unanswered (when given) is set when no answer came (a timeout, a hang-up): the tenant may
  // exist all the same. *invalid (when given) is set when the agent answered 400: it refuses the
  // spec itself (an unknown GPU, a size no GPU has, a command it cannot run), so asking again
  // with the same spec cannot succeed.
  Status CreateTenant(const std::string& name, const std::vector<std::string>& command,
                      const GpuShare& share, TenantInfo* created, bool* conflict,
                      bool* unanswered = nullptr, bool* invalid = nullptr) const;
  // Deletes a tenant (SIGTERM, SIGKILL after grace). An unknown tenant is not an error;
  // *existed (when given) says whether this call found it.
  Status DeleteTenant(const std::string& name, int64_t grace_ms, bool* existed = nullptr) const;
  Status ListTenants(std::vector<TenantInfo>* tenants) const;
  Status ListGpus(std::vector<GpuRoom>* gpus) const;
  Status Health() const;

  const std::string& socket() const { return socket_; }

 private:
  std::string socket_;
};

}  // namespace gpufrac::serve
