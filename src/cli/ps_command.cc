// gpufrac ps: the agent's tenants as a table (GET /v1/tenants), or its answer as is (--json). STATE
// carries the exit status of exited tenants and "rN" after N restarts; attach-only tenants list
// the pids that joined them.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/human_bytes.h"
#include "common/quantity.h"
#include "node/config.h"
#include "node/http_server.h"

namespace gpufrac::cli {
namespace {

struct PsFlags {
  std::string socket = node::NodeConfig{}.socket_path;
  bool json = false;
};

std::string Age(double seconds) {
  const auto s = static_cast<long long>(seconds);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

int RunPs(const PsFlags& flags) {
  int status = 0;
  std::string body;
  if (Status s = node::HttpCall(flags.socket, "GET", "/v1/tenants", "", &status, &body, 10000);
      !s.ok()) {
    std::fprintf(stderr, "gpufrac ps: error: %s\n", s.message().c_str());
    return 1;
  }
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (status != 200 || j.is_discarded() || !j.contains("tenants")) {
    std::fprintf(stderr, "gpufrac ps: error: the agent answered %d: %s", status, body.c_str());
    return 1;
  }
  if (flags.json) {
    // The agent's answer as it came, {"tenants": [...]}, so that scripts read the API's shape
    // (jq .tenants) whether they call the socket or gpufrac ps.
    std::fputs(body.c_str(), stdout);
    if (body.empty() || body.back() != '\n') std::fputs("\n", stdout);
    return 0;
  }
  std::printf("%-20s %-4s %-21s %-10s %-9s %-9s %-10s %-6s %-8s %s\n", "ID", "GPU",
              "MEMORY USED/LIMIT", "REQUEST", "COMPUTE", "PRIORITY", "STATE", "AGE", "PID",
              "COMMAND");
  for (const auto& t : j["tenants"]) {
    std::string command;
    for (const auto& a : t["command"])
      command += (command.empty() ? "" : " ") + a.get<std::string>();
    std::string state = t["state"].get<std::string>();
    if (state == "exited" && t["exit_status"].is_number()) {
      state += "(" + std::to_string(t["exit_status"].get<int>()) + ")";
    }
    // Attach-only tenants run no command of their own: show who joined them instead.
    if (t.value("attach_only", false)) {
      std::string pids;
      for (const auto& p : t["attached"]) pids += (pids.empty() ? "" : ",") + p.dump();
      command = "(attach-only" + (pids.empty() ? std::string() : "; attached " + pids) + ")";
    }
    if (t.value("restarts", 0) > 0) state += " r" + std::to_string(t["restarts"].get<int>());
    const std::string memory = Human(t["memory"]["used"].get<uint64_t>()) + "/" +
                               Human(t["memory"]["limit"].get<uint64_t>());
    char compute[32];
    snprintf(compute, sizeof compute, "%.2f/%.2f", t["compute"]["request"].get<double>(),
             t["compute"]["limit"].get<double>());
    std::printf("%-20s %-4d %-21s %-10s %-9s %-9s %-10s %-6s %-8d %s\n",
                t["id"].get<std::string>().c_str(), t["gpu"].get<int>(), memory.c_str(),
                Human(t["memory"]["request"].get<uint64_t>()).c_str(), compute,
                t["compute"]["priority"].get<std::string>().c_str(), state.c_str(),
                Age(t["age_seconds"].get<double>()).c_str(), t["pid"].get<int>(), command.c_str());
  }
  return 0;
}

}  // namespace

void AddPsCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<PsFlags>();
  CLI::App* cmd = app.add_subcommand("ps", "List the node agent's tenants");
  cmd->add_option("--node", flags->socket, "the agent's API socket")
      ->envname("GPUFRAC_NODE_SOCKET");
  cmd->add_flag("--json", flags->json,
                "print the agent's answer to GET /v1/tenants as it comes, {\"tenants\": [...]}, "
                "instead of a table");
  cmd->callback([flags, exit_code] { *exit_code = RunPs(*flags); });
}

}  // namespace gpufrac::cli
