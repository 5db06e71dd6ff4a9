// gpufrac run: flags in, then either the node agent (--node SOCKET, or an agent answering at the
// default socket) or RunTenant without one. Every usage error is one line and exit code 2.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cli/commands.h"
#include "common/quantity.h"
#include "node/agent_client.h"
#include "runtime/run_session.h"

namespace gpufrac::cli {
namespace {

struct RunFlags {
  std::string gpu;
  std::string fraction;
  std::string memory;
  std::string memory_limit;
  std::string tenant;
  std::string compute;
  std::string compute_limit;
  std::string mode;
  std::string priority;
  std::string node;   // the agent's socket; empty: the default one if an agent answers there
  std::string token;  // join this attach-only tenant of the agent
  bool no_node = false;
  // Where node and no_node came from ("--node" or "GPUFRAC_NODE_SOCKET", "--no-node" or
  // "GPUFRAC_NO_NODE"): a refusal must name what the caller actually set, and an exported
  // variable is a default that a flag may override.
  std::string node_from;
  std::string no_node_from;
  std::vector<std::string> command;
};

// A compute share: a number in [0, 1].
bool ParseShare(const std::string& text, double* share) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || *end != '\0' || !(value >= 0 && value <= 1)) {
    return false;
  }
  *share = value;
  return true;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "gpufrac run: error: %s\n", message.c_str());
  return 2;
}

// --token: the tenant exists already; its memory, compute and GPU are the agent's to say.
int Join(const RunFlags& flags) {
  for (const auto& [flag, value] :
       {std::pair{"--fraction", &flags.fraction}, std::pair{"--memory", &flags.memory},
        std::pair{"--memory-limit", &flags.memory_limit}, std::pair{"--compute", &flags.compute},
        std::pair{"--compute-limit", &flags.compute_limit}, std::pair{"--mode", &flags.mode},
        std::pair{"--priority", &flags.priority}}) {
    if (!value->empty()) {
      return Fail(std::string(flag) +
                  " cannot be combined with --token (the tenant's own settings apply)");
    }
  }
  if (flags.no_node) return Fail("--token needs the agent; drop --no-node");
  if (flags.command.empty()) return Fail("no command given (gpufrac run --token T -- CMD)");
  const std::string socket = flags.node.empty() ? node::DefaultAgentSocket() : flags.node;
  return Fail(node::JoinWithToken(socket, flags.token, flags.command).message());
}

int Run(RunFlags flags) {
  if (!flags.token.empty()) return Join(flags);
  if (flags.no_node && !flags.node.empty()) {
    // GPUFRAC_NODE_SOCKET is often exported for gpufrac ps (docs/node.md); asking for no agent
    // overrides it. Only --node itself contradicts --no-node.
    if (flags.node_from != "--node") {
      flags.node.clear();
    } else {
      return Fail(flags.no_node_from + " contradicts --node");
    }
  }
  RunRequest request;
  request.gpu = flags.gpu;
  request.tenant = flags.tenant;
  request.command = flags.command;
  if (const char* lib = std::getenv("GPUFRAC_LIBRARY")) request.interposer_path = lib;
  if (flags.fraction.empty() == flags.memory.empty()) {
    return Fail("give exactly one of --fraction F or --memory SIZE");
  }
  if (!flags.fraction.empty()) {
    double fraction = 0;
    if (ParseError e = ParseFraction(flags.fraction.c_str(), &fraction); e != ParseError::kNone) {
      return Fail("--fraction '" + flags.fraction + "': " + ParseErrorText(e) +
                  " (expected a number in (0, 1])");
    }
    request.memory_request = MemoryAmount{.is_fraction = true, .fraction = fraction, .bytes = 0};
  } else {
    uint64_t bytes = 0;
    if (ParseError e = ParseSize(flags.memory.c_str(), &bytes); e != ParseError::kNone) {
      return Fail("--memory '" + flags.memory + "': " + ParseErrorText(e));
    }
    request.memory_request = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = bytes};
  }
  if (!flags.memory_limit.empty()) {
    // A size, or (as the agent's API and serve's gpu.memory_limit take it) a fraction of the card.
    if (ParseError e = ParseMemoryAmount(flags.memory_limit.c_str(), &request.memory_limit);
        e != ParseError::kNone) {
      return Fail("--memory-limit '" + flags.memory_limit + "': " + ParseErrorText(e) +
                  " (expected a size like 30GiB or a fraction of the card in (0, 1])");
    }
    request.has_memory_limit = true;
  }
  if (!flags.compute.empty() && !ParseShare(flags.compute, &request.compute_request)) {
    return Fail("--compute '" + flags.compute + "': expected a share of the GPU in [0, 1]");
  }
  if (!flags.compute_limit.empty() && !ParseShare(flags.compute_limit, &request.compute_limit)) {
    return Fail("--compute-limit '" + flags.compute_limit +
                "': expected a share of the GPU in [0, 1]");
  }
  if (flags.mode == "strict") {
    request.compute_mode = ComputeMode::kStrict;
    if (!flags.compute_limit.empty()) {
      return Fail(
          "--compute-limit cannot be combined with --mode strict (strict: limit = request)");
    }
  } else if (!flags.mode.empty() && flags.mode != "fair") {
    return Fail("--mode '" + flags.mode + "': expected fair or strict");
  }
  // Strict holds a tenant to its request: a request of 0 would be a cap of no GPU time at all.
  if (request.compute_mode == ComputeMode::kStrict && request.compute_request == 0) {
    return Fail("--mode strict needs --compute above 0 (strict caps the tenant at its request)");
  }
  if (request.compute_limit == 0) {
    return Fail("--compute-limit '" + flags.compute_limit + "': a cap of no GPU time at all");
  }
  if (flags.priority == "batch") {
    request.priority = Priority::kBatch;
  } else if (!flags.priority.empty() && flags.priority != "inference") {
    return Fail("--priority '" + flags.priority + "': expected inference or batch");
  }
  // Through the agent when asked to, or when one answers at the default socket. The agent does
  // not place tensor-parallel gangs (--gpu 0,1): those run without it, beside its tenants in the
  // same ledgers, unless --node insists.
  const bool gang = flags.gpu.find(',') != std::string::npos;
  if (gang && !flags.node.empty()) {
    const std::string why =
        "--gpu " + flags.gpu + ": the agent does not place multi-GPU (tensor-parallel) tenants yet";
    if (flags.node_from == "--node") return Fail(why + "; drop --node to run it without the agent");
    return Fail(why + ", and " + flags.node_from + "=" + flags.node +
                " asks for the agent; add --no-node or unset " + flags.node_from +
                " to run it without the agent");
  }
  std::string socket = flags.node;
  if (socket.empty() && !flags.no_node && !gang && node::AgentAnswers(node::DefaultAgentSocket())) {
    socket = node::DefaultAgentSocket();
  }
  if (!socket.empty()) {
    if (request.command.empty()) return Fail("no command given (gpufrac run ... -- CMD)");
    node::AgentRunRequest via;
    via.memory = flags.fraction.empty() ? flags.memory : flags.fraction;
    via.memory_limit = flags.memory_limit;
    via.gpu = flags.gpu;
    via.name = flags.tenant;
    via.compute = request.compute_request;
    via.compute_limit = request.compute_limit;
    via.strict = request.compute_mode == ComputeMode::kStrict;
    via.batch = request.priority == Priority::kBatch;
    // Returns only if the agent refused or the command could not be started.
    return Fail(node::RunThroughAgent(socket, via, request.command).message());
  }
  int exit_status = 0;
  if (Status s = RunTenant(request, &exit_status); !s.ok()) return Fail(s.message());
  return exit_status;
}

}  // namespace

void AddRunCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<RunFlags>();
  CLI::App* run = app.add_subcommand(
      "run", "Run a command on a GPU fraction: gpufrac run (--fraction F | --memory SIZE) -- CMD");
  run->add_option("--gpu", flags->gpu,
                  "GPU index or UUID, or a comma list for one tenant over several GPUs (default: "
                  "the first where it fits)")
      ->envname("GPUFRAC_GPU");
  run->add_option("--fraction", flags->fraction,
                  "memory request as a fraction of the card, (0, 1]");
  run->add_option("--memory", flags->memory, "memory request as a size (20GiB, 512MiB, ...)");
  run->add_option("--memory-limit", flags->memory_limit,
                  "burstable limit, >= the request: a size or a fraction of the card (default: "
                  "the request)");
  run->add_option("--tenant", flags->tenant,
                  "tenant name (default: run-<pid>; through the node agent, its t-<8 hex digits>)")
      ->envname("GPUFRAC_TENANT_NAME");
  run->add_option("--compute", flags->compute,
                  "guaranteed compute share in [0, 1] (default: the memory fraction)");
  run->add_option("--compute-limit", flags->compute_limit,
                  "compute cap in [request, 1] (default: 1 in fair mode)");
  run->add_option("--mode", flags->mode,
                  "fair (lend and borrow idle share) or strict (cap at "
                  "the request); default fair");
  run->add_option("--priority", flags->priority, "inference (latency-sensitive, default) or batch");
  CLI::Option* node =
      run->add_option("--node", flags->node,
                      "run as a tenant of the node agent on this socket (default: the agent at "
                      "/run/gpufrac/node.sock when one answers there, else no agent)")
          ->envname("GPUFRAC_NODE_SOCKET");
  run->add_option("--token", flags->token,
                  "join the agent's attach-only tenant that holds this token")
      ->envname("GPUFRAC_NODE_TOKEN");
  CLI::Option* no_node =
      run->add_flag("--no-node", flags->no_node,
                    "run without the agent even when one answers at the default socket or "
                    "GPUFRAC_NODE_SOCKET names one")
          ->envname("GPUFRAC_NO_NODE");
  run->add_option("command", flags->command, "the command and its arguments, after --");
  run->positionals_at_end();
  run->callback([run, node, no_node, flags, exit_code] {
    flags->node_from = SourceName(run, node);
    flags->no_node_from = SourceName(run, no_node);
    *exit_code = Run(*flags);
  });
}

}  // namespace gpufrac::cli
