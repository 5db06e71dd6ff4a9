// A real `gpufrac serve` for integration tests: the real node agent on simulated GPUs (from
// NodeFixture), a deployment file whose replicas are gpufrac-synth-server processes started as
// the agent's tenants, and small blocking HTTP clients to talk to the gateway.
#pragma once

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "node/node_test_support.h"

namespace gpufrac::testing {

struct HttpReply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                                          // decoded (chunk framing removed)
  bool complete = false;  // the response ended properly (not cut, not timed out)
  double ms = 0;          // from sending to the end of the response
  std::string Header(const std::string& name) const;
};

// Sends a raw request on a new loopback connection and reads the response.
HttpReply HttpRequest(int port, const std::string& method, const std::string& path,
                      const std::string& body = "", const std::string& extra_headers = "",
                      int timeout_ms = 20000);
// A new loopback connection to `port` (-1 if refused); receive_buffer > 0 sets SO_RCVBUF first.
int ConnectLoopback(int port, int receive_buffer = 0);
// Sends raw bytes; returns the connected fd (or -1).
int SendRaw(int port, const std::string& bytes);
// Reads one response from fd until it is complete, the peer closes, or timeout_ms passes.
HttpReply ReadReply(int fd, int timeout_ms);
// A chat completion request body.
std::string ChatBody(const std::string& model, int max_tokens, bool stream = true);

class ServeFixture : public NodeFixture {
 protected:
  void TearDown() override;

  // Writes deploy.yaml (the test header with fast autoscaler settings, plus `models_yaml`, a
  // "models:" list) and starts gpufrac serve; returns once /health answers.
  void StartServe(const std::string& models_yaml, const std::string& gateway_extra = "",
                  const std::string& top_extra = "");
  // The same without waiting: starts the process and returns.
  void LaunchServe(const std::string& models_yaml, const std::string& gateway_extra = "",
                   const std::string& top_extra = "");
  void WriteDeploy(const std::string& models_yaml, const std::string& gateway_extra = "",
                   const std::string& top_extra = "");
  int StopServe(int sig = SIGTERM);
  // The synthetic server (unsanitized, see CMakeLists.txt) as a YAML command list, with extra
  // arguments.
  std::string Synth(const std::vector<std::string>& args = {}) const;
  nlohmann::json Health();
  // Polls /health until model's ready replicas satisfy pred.
  bool WaitReplicas(const std::string& model, std::function<bool(int ready)> pred,
                    int timeout_ms = 20000);
  bool WaitFor(const std::function<bool()>& pred, int timeout_ms);
  // One sample of /metrics ("name{labels}" exactly as exported); -1 when absent.
  double Metric(const std::string& series);
  std::string ServeLog() const;
  // Pids of the agent's running tenants whose id contains `part`.
  std::vector<pid_t> TenantPids(const std::string& part);

  int port_ = 0;
  pid_t serve_ = -1;
  std::string serve_shell_prefix_;  // shell commands run before exec'ing gpufrac serve (ulimit)
  std::string serve_args_;          // more arguments for gpufrac serve, shell-quoted
  std::string deploy_path_, serve_log_;
};

}  // namespace gpufrac::testing
