// `gpufrac serve DEPLOY.yaml`: load the deployment file, run the gateway and the replica manager
// on one event loop until SIGTERM/SIGINT; SIGHUP (or POST /admin/reload) reloads the file.
#pragma once

#include <string>

namespace gpufrac::serve {

struct ServeOptions {
  std::string deploy_path;
  std::string listen;       // overrides gateway.listen when set
  std::string node_socket;  // overrides node.socket when set
  bool check_only = false;  // validate the file and exit
  // How long to wait at start for the node agent to answer: `gpufrac node ... &` followed at once
  // by `gpufrac serve` races the agent's socket into existence.
  std::string agent_wait = "10s";
};

// Returns the process exit code: 0 after a clean stop, 2 for a bad file or flag, 1 otherwise.
int RunServe(const ServeOptions& options);

}  // namespace gpufrac::serve
