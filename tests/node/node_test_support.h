// A real `gpufrac node` for integration tests: started as its own process on a temp socket and
// state file, against the fixture's simulated GPUs, and spoken to over its unix socket.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/sim_fixture.h"

namespace gpufrac::testing {

struct ApiReply {
  int status = 0;
  nlohmann::json body;
  std::string raw;
};

class NodeFixture : public SimFixture {
 protected:
  void TearDown() override;

  // Writes the config (extra YAML lines appended to the test defaults) and starts the agent;
  // returns once it answers /v1/health.
  void StartAgent(const std::string& extra_yaml = "", const Env& extra_env = {});
  void KillAgent(int sig);  // and waits for it
  ApiReply Call(const std::string& method, const std::string& target, const std::string& body = "");
  // Creates a tenant; expects 201 and remembers its pid for cleanup.
  nlohmann::json Create(const nlohmann::json& spec);
  // Polls GET /v1/tenants/ID until `pred` holds or `timeout_ms` passes; returns the last body.
  template <typename Pred>
  nlohmann::json WaitTenant(const std::string& id, Pred pred, int timeout_ms = 5000);
  uint64_t Committed(int gpu);

  std::string socket_;
  std::string state_;
  std::string agent_log_;  // the agent's stderr: one logfmt line per event
  pid_t agent_ = -1;
  std::vector<pid_t> tenant_pids_;
};

// Sends raw bytes on a fresh connection to the socket; returns the fd (caller closes).
int ConnectRaw(const std::string& socket_path);
// Reads until EOF or `timeout_ms`.
std::string ReadAll(int fd, int timeout_ms);
// A loopback TCP port that was free a moment ago (bound to port 0, then released).
int FreePort();
// A loopback TCP port held taken by a listening socket: the fd (caller closes) and the port.
int ListenOnLoopback(int* port);
// The lowest descriptor number `pid` has free (what its next open would get).
int LowestFreeFd(pid_t pid);

template <typename Pred>
nlohmann::json NodeFixture::WaitTenant(const std::string& id, Pred pred, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  ApiReply r;
  do {
    r = Call("GET", "/v1/tenants/" + id);
    if (r.status == 200 && pred(r.body)) return r.body;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  ADD_FAILURE() << "tenant " << id << " never reached the expected state: " << r.raw;
  return r.body;
}

}  // namespace gpufrac::testing
