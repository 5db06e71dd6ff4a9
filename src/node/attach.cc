// Attach-only tenants (docs/node.md): a tenant created without a command is a reservation on a GPU
// that processes started elsewhere join by presenting its token (POST /v1/attach, or
// `gpufrac run --node SOCKET --token T -- CMD`). The agent answers with the environment that puts
// the process under the interposer as that tenant, and from then on signals it on delete and
// counts it among the tenant's processes.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "node/agent.h"
#include "node/log.h"
#include "runtime/process_identity.h"

namespace gpufrac::node {
namespace {

// Compares without an early exit, so that the answer time does not reveal a token's prefix.
bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The parent of `pid` from /proc/PID/stat (fields after the command, which may hold spaces and
// parentheses), or 0 when it cannot be read.
pid_t ParentPid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream rest(stat.substr(paren + 1));
  std::string state;
  pid_t ppid = 0;
  return rest >> state >> ppid ? ppid : 0;
}

}  // namespace

std::string WhyPidCannotJoin(pid_t pid) {
  // A tenant's delete signals its attached processes (SIGTERM, then SIGKILL): joining init, the
  // agent or one of its ancestors (its supervisor, the shell that started it) to a tenant would
  // let a delete take the agent, or the host, down.
  if (pid == 1) return std::to_string(pid) + " is init";
  if (pid == getpid()) return std::to_string(pid) + " is the agent itself";
  for (pid_t at = ParentPid(getpid()); at > 1; at = ParentPid(at)) {
    if (at == pid) return std::to_string(pid) + " is an ancestor of the agent";
  }
  return "";
}

std::string Agent::NewTokenLocked() {
  // 128 bits from the kernel's generator: the token is the only thing that lets a process join.
  std::random_device rd;
  char token[40];
  snprintf(token, sizeof token, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return token;
}

std::vector<std::pair<std::string, std::string>> Agent::TenantEnv(const TenantRecord& r) const {
  return {
      {"LD_PRELOAD", interposer_}, {"GPUFRAC_TENANT", r.id}, {"CUDA_VISIBLE_DEVICES", r.gpu_uuid}};
}

bool Agent::PruneAttachedLocked(TenantRecord* r) {
  const size_t before = r->attached.size();
  std::erase_if(r->attached, [](const std::pair<pid_t, uint64_t>& p) {
    return !ProcessIsAlive(p.first, p.second);
  });
  if (r->attached.size() != before) PersistLocked(*r);
  return r->attached.empty();
}

AgentError Agent::Attach(const std::string& token, pid_t pid, AttachView* out) {
  const uint64_t start = pid > 0 ? ProcessStartTime(pid) : 0;
  if (start == 0) {
    return AgentError::Invalid("pid: " + std::to_string(pid) + " is not a running process");
  }
  if (std::string why = WhyPidCannotJoin(pid); !why.empty()) {
    return AgentError::Invalid("pid: " + why);
  }
  std::lock_guard lock(mu_);
  for (auto& [id, t] : tenants_) {
    TenantRecord& r = t.record;
    if (!r.attach_only || !SameToken(r.token, token)) continue;
    if (r.state != TenantState::kRunning) {
      return AgentError::Conflict("tenant '" + id + "' is " + StateName(r.state));
    }
    bool known = false;
    for (const auto& [p, s] : r.attached) known |= p == pid && s == start;
    if (!known) r.attached.emplace_back(pid, start);
    r.ever_attached = true;
    PersistLocked(r);
    LogEvent("tenant.attached",
             {{"id", id}, {"gpu", std::to_string(r.gpu_index)}, {"pid", std::to_string(pid)}});
    out->record = r;
    out->env = TenantEnv(r);
    return {};
  }
  return {403, "no running attach-only tenant has this token"};
}

}  // namespace gpufrac::node
