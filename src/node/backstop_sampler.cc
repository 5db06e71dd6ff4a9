// The NVML backstop (docs/node.md): every backstop.interval the agent asks NVML which processes
// hold memory on its GPUs, attributes each to a tenant, and flags or kills (backstop.mode) those
// that belong to no tenant or whose tenant holds more than its limit. An offender must be found in
// two consecutive samples before anything happens, so a process caught between its first CUDA
// call and its ledger slot, or a figure NVML read mid-change, is never acted on.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/human_bytes.h"
#include "common/quantity.h"
#include "node/agent.h"
#include "node/log.h"
#include "runtime/process_identity.h"

namespace gpufrac::node {
namespace {

constexpr int kConfirmSamples = 2;
constexpr int kMaxAncestry = 64;  // deeper process trees are not attributed by ancestry

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Parent and session of `pid` from /proc/PID/stat (fields 4 and 6, after the command's ')').
bool ReadParentAndSession(pid_t pid, pid_t* ppid, pid_t* sid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(text.substr(close + 1));
  char state = 0;
  pid_t pgrp = 0;
  return static_cast<bool>(rest >> state >> *ppid >> pgrp >> *sid);
}

}  // namespace

ObservedProcess Agent::AttributeLocked(size_t gpu, const GpuProcess& p) const {
  ObservedProcess o;
  o.pid = p.pid;
  o.start_time = ProcessStartTime(p.pid);
  o.used = p.used_bytes;
  o.used_known = p.used_known;
  // 1. A slot in the GPU's ledger: the interposer charges this process to a tenant (the agent's,
  //    or a gpufrac run's); its limit is the ledger's.
  const Ledger& ledger = *ledgers_[gpu];
  const int slot = ledger.FindSlot(p.pid, o.start_time);
  if (slot >= 0) {
    const ProcessSlot& s = ledger.usage()->processes[slot];
    const TenantLimits& l = ledger.limits()->tenants[s.tenant % kMaxTenants];
    if (__atomic_load_n(&l.active, __ATOMIC_ACQUIRE) == 1 && l.generation == s.generation) {
      o.tenant.assign(l.spec.name, strnlen(l.spec.name, sizeof l.spec.name));
      o.tenant_limit = l.spec.memory_limit;
      return o;
    }
  }
  // 2. No slot (it never loaded the interposer, or it went around it): one of this agent's
  //    tenants' processes if it descends from, or shares the session of, the tenant's command or
  //    an attached process.
  std::map<pid_t, const TenantRecord*> roots;
  for (const auto& [id, t] : tenants_) {
    const TenantRecord& r = t.record;
    if (r.state == TenantState::kExited || r.gpu_uuid != gpus_[gpu].uuid) continue;
    if (r.pid > 0 && ProcessIsAlive(r.pid, r.pid_start)) roots[r.pid] = &r;
    for (const auto& [pid, start] : r.attached) {
      if (ProcessIsAlive(pid, start)) roots[pid] = &r;
    }
  }
  pid_t at = p.pid;
  for (int depth = 0; depth < kMaxAncestry && at > 1; ++depth) {
    pid_t ppid = 0;
    pid_t sid = 0;
    if (!ReadParentAndSession(at, &ppid, &sid)) break;
    auto it = roots.find(at);
    if (it == roots.end()) it = roots.find(sid);  // tenants' commands lead their own sessions
    if (it != roots.end()) {
      o.tenant = it->second->id;
      o.tenant_limit = it->second->memory_limit;
      return o;
    }
    at = ppid;
  }
  return o;
}

void Agent::SampleBackstop() {
  const auto started = std::chrono::steady_clock::now();
  std::vector<double> busy(gpus_.size(), -1);
  std::vector<std::string> problems;
  for (size_t i = 0; i < gpus_.size(); ++i) {
    if (!nvml_->Busy(gpus_[i].uuid, &busy[i]).ok()) busy[i] = -1;
    problems.push_back(nvml_->Problem(gpus_[i].uuid));
  }
  if (config_.backstop_mode == BackstopMode::kOff) {
    std::lock_guard lock(mu_);
    gpu_busy_ = busy;
    UpdateHealthLocked(problems);
    return;
  }
  std::vector<std::vector<GpuProcess>> seen(gpus_.size());
  std::string error;
  for (size_t i = 0; i < gpus_.size() && error.empty(); ++i) {
    if (Status s = nvml_->Read(gpus_[i].uuid, &seen[i]); !s.ok()) error = s.message();
  }
  std::lock_guard lock(mu_);
  gpu_busy_ = busy;
  UpdateHealthLocked(problems);
  ++backstop_.samples;
  if (!error.empty()) {
    if (backstop_.error != error) LogEvent("backstop.error", {{"error", error}});
    backstop_.error = error;
    return;
  }
  backstop_.error.clear();
  const int64_t now = NowMs();
  const pid_t self = getpid();
  std::set<std::tuple<int, pid_t, uint64_t, int>> current;
  std::vector<BackstopOffender> offenders;
  nvml_used_.clear();
  for (size_t i = 0; i < gpus_.size(); ++i) {
    std::vector<ObservedProcess> observed;
    for (const GpuProcess& p : seen[i]) {
      if (p.pid == self || p.pid <= 0) continue;
      observed.push_back(AttributeLocked(i, p));
    }
    uint64_t unattributed = 0;
    for (const ObservedProcess& o : observed) {
      if (o.tenant.empty()) {
        unattributed += o.used;
      } else {
        nvml_used_[o.tenant] += o.used;
      }
    }
    backstop_.unattributed[i] = unattributed;
    const int gpu = gpus_[i].index;
    for (const BackstopFinding& f : JudgeGpuProcesses(observed, config_.backstop_tolerance_bytes)) {
      const int reason = static_cast<int>(f.reason);
      const auto key = std::make_tuple(gpu, f.pid, f.start_time, reason);
      current.insert(key);
      Suspect& s = suspects_[key];
      if (s.samples++ == 0) s.since_ms = now;
      if (s.samples < kConfirmSamples) continue;
      const std::string why = DescribeFinding(f, gpu);
      LogFields fields = {{"pid", std::to_string(f.pid)},
                          {"gpu", std::to_string(gpu)},
                          {"tenant", f.tenant.empty() ? "none" : f.tenant},
                          {"reason", BackstopReasonName(f.reason)},
                          {"used", Human(f.used)},
                          {"detail", why}};
      if (!s.reported) {
        s.reported = true;
        ++backstop_.flagged[i][static_cast<size_t>(reason)];
        LogEvent("backstop.flagged", fields);
      }
      if (config_.backstop_mode == BackstopMode::kKill && !s.killed &&
          ProcessIsAlive(f.pid, f.start_time)) {
        kill(f.pid, SIGKILL);
        s.killed = true;
        ++backstop_.killed[i][static_cast<size_t>(reason)];
        LogEvent("backstop.killed", fields);
        auto t = tenants_.find(f.tenant);
        if (t != tenants_.end() && t->second.backstop_kill.empty()) {
          t->second.backstop_kill =
              "killed by the NVML backstop: process " + std::to_string(f.pid) + " " + why;
        }
      }
      offenders.push_back({gpu, f, s.killed, s.since_ms});
    }
  }
  // Forget suspects no longer seen: they ended, or came back within the rules.
  for (auto it = suspects_.begin(); it != suspects_.end();) {
    it = current.count(it->first) != 0 ? std::next(it) : suspects_.erase(it);
  }
  backstop_.offenders = std::move(offenders);
  backstop_.last_sample_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
}

void Agent::UpdateHealthLocked(const std::vector<std::string>& problems) {
  for (size_t i = 0; i < gpus_.size() && i < problems.size(); ++i) {
    if (problems[i] == gpu_problem_[i]) continue;
    if (problems[i].empty()) {
      LogEvent("gpu.healthy", {{"gpu", std::to_string(gpus_[i].index)}, {"uuid", gpus_[i].uuid}});
    } else {
      LogEvent("gpu.unhealthy", {{"gpu", std::to_string(gpus_[i].index)},
                                 {"uuid", gpus_[i].uuid},
                                 {"reason", problems[i]}});
    }
    gpu_problem_[i] = problems[i];
  }
}

BackstopView Agent::Backstop() {
  std::lock_guard lock(mu_);
  return backstop_;
}

}  // namespace gpufrac::node
