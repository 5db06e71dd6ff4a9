#include "serve/orphans.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace gpufrac::serve {
namespace {

constexpr int64_t kOrphanGraceMs = 2000;

// A live gpufrac serve process, not some other program that got the pid since.
bool GatewayRunning(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  std::string cmdline = text.str();
  for (char& c : cmdline) c = c == '\0' ? ' ' : c;
  return cmdline.find("gpufrac") != std::string::npos &&
         cmdline.find(" serve ") != std::string::npos;
}

}  // namespace

bool IsOrphanReplica(const std::string& id) {
  if (id.rfind("sv", 0) != 0) return false;
  const size_t dash = id.find('-');
  if (dash == std::string::npos || dash == 2) return false;
  const std::string digits = id.substr(2, dash - 2);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) {
    return false;
  }
  const pid_t pid = static_cast<pid_t>(std::stol(digits));
  // Called at start, before this gateway has created anything: a tenant named for this very pid
  // is a predecessor's whose pid was reused (usual in containers), not ours.
  return pid == getpid() || !GatewayRunning(pid);
}

Status DeleteOrphanReplicas(const NodeClient& node, std::vector<std::string>* deleted) {
  std::vector<TenantInfo> tenants;
  if (Status s = node.ListTenants(&tenants); !s.ok()) return s;
  std::vector<std::thread> workers;
  for (const TenantInfo& t : tenants) {
    if (!IsOrphanReplica(t.id)) continue;
    deleted->push_back(t.id);
    workers.emplace_back([&node, id = t.id] { node.DeleteTenant(id, kOrphanGraceMs); });
  }
  for (std::thread& w : workers) w.join();
  return Status::Ok();
}

}  // namespace gpufrac::serve
