// gpufrac node: the host agent. Flags and the config file in, Agent + HttpServer out.
#include <grp.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "node/agent.h"
#include "node/api.h"
#include "node/config.h"
#include "node/http_server.h"
#include "node/instance_lock.h"
#include "node/log.h"

namespace gpufrac::cli {
namespace {

struct NodeFlags {
  std::string config;
  std::string socket;
  std::string state;
};

// The API server's options from the config: the socket's group and the TCP token are resolved
// here, before anything is claimed, so that a bad one stops the start with nothing touched.
bool ServerOptions(const node::NodeConfig& config, node::HttpServerOptions* options) {
  options->socket_path = config.socket_path;
  options->socket_mode = config.socket_mode;
  if (!config.socket_group.empty()) {
    // Validated with the config; looked up again in case the group went away since.
    const group* g = getgrnam(config.socket_group.c_str());
    if (g == nullptr) {
      std::fprintf(stderr, "gpufrac node: error: socket_group: no group '%s' on this host\n",
                   config.socket_group.c_str());
      return false;
    }
    options->socket_gid = static_cast<int>(g->gr_gid);
  }
  options->max_body_bytes = config.max_body_bytes;
  options->request_timeout_ms = config.request_timeout_ms;
  options->threads = config.api_threads;
  if (!config.tcp_address.empty()) {
    std::ifstream in(config.tcp_token_file);
    std::string token;
    if (!in || !std::getline(in, token) || token.empty()) {
      std::fprintf(stderr, "gpufrac node: error: cannot read a token from tcp.token_file '%s'\n",
                   config.tcp_token_file.c_str());
      return false;
    }
    while (!token.empty() && isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
    options->tcp_address = config.tcp_address;
    options->tcp_token = token;
  }
  return true;
}

int RunNode(const NodeFlags& flags) {
  node::NodeConfig config;
  if (!flags.config.empty()) {
    if (Status s = node::LoadConfig(flags.config, &config); !s.ok()) {
      std::fprintf(stderr, "gpufrac node: error: %s\n", s.message().c_str());
      return 2;
    }
  }
  if (!flags.socket.empty()) config.socket_path = flags.socket;
  if (!flags.state.empty()) config.state_path = flags.state;
  node::HttpServerOptions options;
  if (!ServerOptions(config, &options)) return 2;
  // Order matters: Agent::Start adopts the tenants recorded in the state (taking over their
  // ledger entries), so everything that can refuse this start comes first. Otherwise a second
  // agent, refused later, would leave the live agent's tenants owned by a dead pid and the live
  // agent would reap their memory while they run.
  node::InstanceLock state_lock;
  if (Status s = state_lock.Acquire(config.state_path, "is using the state"); !s.ok()) {
    std::fprintf(stderr, "gpufrac node: error: %s\n", s.message().c_str());
    return 1;
  }
  node::HttpServer server;
  if (Status s = server.Listen(options); !s.ok()) {
    std::fprintf(stderr, "gpufrac node: error: %s\n", s.message().c_str());
    return 1;
  }
  std::unique_ptr<node::Agent> agent;
  if (Status s = node::Agent::Start(config, &agent); !s.ok()) {
    std::fprintf(stderr, "gpufrac node: error: %s\n", s.message().c_str());
    return 1;
  }
  server.Serve(node::MakeApiHandler(agent.get()));
  node::LogEvent("agent.ready", {{"socket", config.socket_path},
                                 {"tcp", config.tcp_address.empty() ? "off" : config.tcp_address},
                                 {"state", config.state_path}});
  server.WaitForSignal();
  server.Stop();
  agent.reset();  // tenants keep running; the next agent adopts them
  node::LogEvent("agent.stopped", {});
  return 0;
}

}  // namespace

void AddNodeCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<NodeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "node", "Run the host agent: owns the GPUs, places and runs tenants, serves the API");
  cmd->add_option("--config", flags->config, "YAML config file (see docs/node.md)")
      ->envname("GPUFRAC_NODE_CONFIG");
  cmd->add_option("--socket", flags->socket, "API unix socket (overrides the config)")
      ->envname("GPUFRAC_NODE_SOCKET");
  cmd->add_option("--state", flags->state, "SQLite state file (overrides the config)")
      ->envname("GPUFRAC_NODE_STATE");
  cmd->callback([flags, exit_code] { *exit_code = RunNode(*flags); });
}

}  // namespace gpufrac::cli
