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
  bool socket_given = false;  // by the flag or the variable (possibly empty)
  std::string socket_from;    // "--socket" or "GPUFRAC_NODE_SOCKET", for messages
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

// --socket (or GPUFRAC_NODE_SOCKET) checked as the config file's socket: key is, before any lock
// file is created: a path the kernel cannot bind must not get as far as Listen.
bool SocketFlagOk(const NodeFlags& flags) {
  if (flags.socket_given && flags.socket.empty()) {
    std::fprintf(stderr, "gpufrac node: error: %s: must not be empty\n", flags.socket_from.c_str());
    return false;
  }
  if (flags.socket.size() > node::kMaxSocketPathBytes) {
    std::fprintf(stderr,
                 "gpufrac node: error: %s: longer than %zu bytes (it is %zu), the most a unix "
                 "socket's path may have\n",
                 flags.socket_from.c_str(), node::kMaxSocketPathBytes, flags.socket.size());
    return false;
  }
  return true;
}

int Start(const node::NodeConfig& config, const node::HttpServerOptions& options) {
  // Order matters: Agent::Start adopts the tenants recorded in the state (taking over their
  // ledger entries), so everything that can refuse this start comes first. Otherwise a second
  // agent, refused later, would leave the live agent's tenants owned by a dead pid and the live
  // agent would reap their memory while they run.
  node::InstanceLock state_lock;
  node::HttpServer server;
  std::unique_ptr<node::Agent> agent;
  // A start that fails leaves nothing of its own behind: the socket and the lock files it created
  // go (ones that existed stay). The server first: its threads may be calling into the agent.
  auto fail = [&](const std::string& message) {
    server.Abandon();
    agent.reset();
    state_lock.Discard();
    std::fprintf(stderr, "gpufrac node: error: %s\n", message.c_str());
    return 1;
  };
  try {
    if (Status s = state_lock.Acquire(config.state_path, "is using the state"); !s.ok()) {
      return fail(s.message());
    }
    if (Status s = server.Listen(options); !s.ok()) return fail(s.message());
    if (Status s = node::Agent::Start(config, &agent); !s.ok()) return fail(s.message());
    server.Serve(node::MakeApiHandler(agent.get()));
  } catch (const std::exception& e) {
    // Nothing in the start may escape as an abort (exit 134, lock files left behind).
    return fail(e.what());
  }
  node::LogEvent("agent.ready", {{"socket", config.socket_path},
                                 {"tcp", config.tcp_address.empty() ? "off" : config.tcp_address},
                                 {"state", config.state_path}});
  server.WaitForSignal();
  server.Stop();
  agent.reset();  // tenants keep running; the next agent adopts them
  node::LogEvent("agent.stopped", {});
  return 0;
}

int RunNode(const NodeFlags& flags) {
  if (!SocketFlagOk(flags)) return 2;
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
  return Start(config, options);
}

}  // namespace

void AddNodeCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<NodeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "node", "Run the host agent: owns the GPUs, places and runs tenants, serves the API");
  cmd->add_option("--config", flags->config, "YAML config file (see docs/node.md)")
      ->envname("GPUFRAC_NODE_CONFIG");
  CLI::Option* socket =
      cmd->add_option("--socket", flags->socket, "API unix socket (overrides the config)")
          ->envname("GPUFRAC_NODE_SOCKET");
  cmd->add_option("--state", flags->state, "SQLite state file (overrides the config)")
      ->envname("GPUFRAC_NODE_STATE");
  cmd->callback([cmd, socket, flags, exit_code] {
    flags->socket_given = socket->count() > 0;
    flags->socket_from = SourceName(cmd, socket);
    *exit_code = RunNode(*flags);
  });
}

}  // namespace gpufrac::cli
