// gpufrac serve: many models behind one OpenAI-compatible endpoint, replicas on GPU fractions of
// the node agent, autoscaled on their SLA. Flags in, serve::RunServe out.
#include "cli/commands.h"
#include "serve/server.h"

namespace gpufrac::cli {

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<serve::ServeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve the models of a deployment file behind one OpenAI-compatible endpoint");
  cmd->add_option("deploy", options->deploy_path, "Deployment file (YAML), see docs/serve.md")
      ->required()
      ->envname("GPUFRAC_SERVE_DEPLOY");
  cmd->add_option("--listen", options->listen, "IP:PORT to serve on (overrides gateway.listen)")
      ->envname("GPUFRAC_SERVE_LISTEN");
  cmd->add_option("--node", options->node_socket, "The node agent's socket (overrides node.socket)")
      ->envname("GPUFRAC_NODE_SOCKET");
  cmd->add_option("--agent-wait", options->agent_wait,
                  "How long to wait at start for the node agent to answer (default 10s)")
      ->envname("GPUFRAC_SERVE_AGENT_WAIT");
  cmd->add_flag("--check", options->check_only, "Validate the deployment file and exit");
  cmd->callback([options, exit_code] { *exit_code = serve::RunServe(*options); });
}

}  // namespace gpufrac::cli
