#include "node/agent_client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "node/config.h"
#include "node/http_server.h"

namespace gpufrac::node {
namespace {

using nlohmann::json;

constexpr uint32_t kHealthTimeoutMs = 2000;
// Every call of this client may be a create.
constexpr uint32_t kCallTimeoutMs = kCreateTenantTimeoutMs;

// Calls the agent; non-2xx answers become errors carrying the agent's message.
Status Call(const std::string& socket, const std::string& method, const std::string& target,
            const json& body, json* out) {
  int status = 0;
  std::string text;
  if (Status s = HttpCall(socket, method, target, body.dump(), &status, &text, kCallTimeoutMs);
      !s.ok()) {
    return s;
  }
  *out = json::parse(text, nullptr, false);
  if (status / 100 == 2 && out->is_object()) return Status::Ok();
  if (out->is_object() && out->contains("error") && (*out)["error"].contains("message")) {
    return Status::Error("the agent refused (" + std::to_string(status) +
                         "): " + (*out)["error"]["message"].get<std::string>());
  }
  return Status::Error("the agent answered " + std::to_string(status));
}

// Replaces this process with `command`, under the tenant's environment (the agent's answer): the
// interposer ahead of any preload, the tenant's name and only its GPU.
Status ExecAs(const json& tenant, const std::vector<std::string>& command) {
  const json& env = tenant["env"];
  if (!env.is_object() || !env.contains("LD_PRELOAD") || !env.contains("GPUFRAC_TENANT") ||
      !env.contains("CUDA_VISIBLE_DEVICES")) {
    return Status::Error("the agent's answer lacks the tenant's environment");
  }
  std::vector<std::string> entries;
  std::string preload = env["LD_PRELOAD"].get<std::string>();
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (entry.rfind("LD_PRELOAD=", 0) == 0) {
      preload += ":" + entry.substr(11);
    } else if (entry.rfind("GPUFRAC_TENANT=", 0) != 0 &&
               entry.rfind("CUDA_VISIBLE_DEVICES=", 0) != 0 &&
               entry.rfind("GPUFRAC_MEMORY_", 0) != 0 &&
               entry.rfind("GPUFRAC_NODE_TOKEN=", 0) != 0) {
      entries.push_back(entry);
    }
  }
  entries.push_back("LD_PRELOAD=" + preload);
  entries.push_back("GPUFRAC_TENANT=" + env["GPUFRAC_TENANT"].get<std::string>());
  entries.push_back("CUDA_VISIBLE_DEVICES=" + env["CUDA_VISIBLE_DEVICES"].get<std::string>());
  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  execvpe(argv[0], argv.data(), envp.data());
  // The agent sees this process end and releases the tenant.
  return Status::Error("cannot run '" + command[0] + "': " + strerror(errno));
}

}  // namespace

std::string DefaultAgentSocket() { return NodeConfig{}.socket_path; }

bool AgentAnswers(const std::string& socket) {
  struct stat st;
  if (stat(socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  int status = 0;
  std::string body;
  return HttpCall(socket, "GET", "/v1/health", "", &status, &body, kHealthTimeoutMs).ok() &&
         status == 200;
}

Status RunThroughAgent(const std::string& socket, const AgentRunRequest& request,
                       const std::vector<std::string>& command) {
  if (command.empty()) return Status::Error("no command given");
  json spec = {{"memory", request.memory}, {"release", "on_exit"}, {"attach_pid", getpid()}};
  if (!request.memory_limit.empty()) spec["memory_limit"] = request.memory_limit;
  if (!request.gpu.empty()) spec["gpu"] = request.gpu;
  if (!request.name.empty()) spec["name"] = request.name;
  if (request.compute >= 0) spec["compute"] = request.compute;
  if (request.compute_limit >= 0) spec["compute_limit"] = request.compute_limit;
  if (request.strict) spec["compute_mode"] = "strict";
  if (request.batch) spec["priority"] = "batch";
  json tenant;
  if (Status s = Call(socket, "POST", "/v1/tenants", spec, &tenant); !s.ok()) return s;
  return ExecAs(tenant, command);
}

Status JoinWithToken(const std::string& socket, const std::string& token,
                     const std::vector<std::string>& command) {
  if (command.empty()) return Status::Error("no command given");
  json tenant;
  if (Status s = Call(socket, "POST", "/v1/attach", {{"token", token}, {"pid", getpid()}}, &tenant);
      !s.ok()) {
    return s;
  }
  return ExecAs(tenant, command);
}

}  // namespace gpufrac::node
