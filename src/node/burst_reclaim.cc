// Memory-burst reclaim (docs/node.md): when a request fits nowhere, take back what this agent's
// tenants borrowed above their requests: notice (signal and/or HTTP hook), deadline, kill.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <thread>

#include "node/agent.h"
#include "node/http_server.h"
#include "node/log.h"
#include "runtime/process_identity.h"

namespace gpufrac::node {
namespace {

constexpr auto kPoll = std::chrono::milliseconds(10);

}  // namespace

Agent::BurstPlan Agent::PlanBurstReclaimLocked(const std::vector<uint64_t>& asked,
                                               const std::vector<int>& short_of_memory) {
  BurstPlan best;
  uint64_t best_slack = UINT64_MAX;
  for (const int gpu : short_of_memory) {
    const size_t i = static_cast<size_t>(gpu);  // GPU indexes are positions in gpus_
    const uint64_t total = gpus_[i].total_bytes;
    const uint64_t committed = ledgers_[i]->Committed();
    const uint64_t free_bytes = committed < total ? total - committed : 0;
    if (asked[i] > total) continue;
    // Borrowers on this GPU and what each holds above its request.
    std::vector<std::pair<uint64_t, std::string>> borrowers;
    for (const auto& [id, t] : tenants_) {
      const TenantRecord& r = t.record;
      if (r.state != TenantState::kRunning || r.gpu_index != gpu) continue;
      const TenantView v = ViewLocked(t);
      if (v.usage.used > r.memory_request) {
        borrowers.emplace_back(v.usage.used - r.memory_request, id);
      }
    }
    std::sort(borrowers.rbegin(), borrowers.rend());
    // Victim policy: the largest borrowers first, only as many as the request needs.
    BurstPlan plan;
    plan.gpu = gpu;
    uint64_t room = free_bytes;
    for (const auto& [excess, id] : borrowers) {
      if (room >= asked[i]) break;
      plan.victims.push_back(id);
      room += excess;
    }
    if (room < asked[i] || plan.victims.empty()) continue;
    // Like bin-pack: the GPU left fullest after the reclaim.
    if (room - asked[i] < best_slack) {
      best_slack = room - asked[i];
      best = plan;
    }
  }
  return best;
}

void Agent::ReclaimBurst(const BurstPlan& plan, uint64_t asked) {
  using Clock = std::chrono::steady_clock;
  const size_t pos = static_cast<size_t>(plan.gpu);
  const uint64_t total = gpus_[pos].total_bytes;
  auto fits = [&] { return ledgers_[pos]->Committed() + asked <= total; };
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.burst_reclaim_deadline_ms);
  std::vector<std::pair<std::string, std::string>> hooks;  // (url, body), called without mu_
  {
    std::lock_guard lock(mu_);
    for (const std::string& id : plan.victims) {
      auto it = tenants_.find(id);
      if (it == tenants_.end()) continue;
      const TenantRecord& r = it->second.record;
      if (!r.burst_hook.empty()) {
        const uint64_t used = ViewLocked(it->second).usage.used;
        const nlohmann::json notice = {
            {"tenant", id},
            {"gpu", plan.gpu},
            {"give_back_bytes", used > r.memory_request ? used - r.memory_request : 0},
            {"deadline_ms", config_.burst_reclaim_deadline_ms}};
        hooks.emplace_back(r.burst_hook, notice.dump());
      }
      // Notice goes to the command's process only, which decides how to give memory back; an
      // attach-only tenant has no command, so each process that joined it gets it.
      if (r.burst_signal > 0 && ProcessIsAlive(r.pid, r.pid_start)) kill(r.pid, r.burst_signal);
      for (const auto& [pid, start] : r.attached) {
        if (r.burst_signal > 0 && ProcessIsAlive(pid, start)) kill(pid, r.burst_signal);
      }
      LogEvent("tenant.burst_notified",
               {{"id", id},
                {"gpu", std::to_string(plan.gpu)},
                {"signal", r.burst_signal > 0 ? std::to_string(r.burst_signal) : "none"},
                {"hook", r.burst_hook.empty() ? "none" : r.burst_hook},
                {"deadline_ms", std::to_string(config_.burst_reclaim_deadline_ms)}});
    }
  }
  for (const auto& [url, body] : hooks) {
    // Bounded: a hook that hangs must not hold the reclaim past its deadline.
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    int status = 0;
    Status s = HttpPostUrl(url, body, static_cast<uint32_t>(std::max<int64_t>(left.count(), 100)),
                           &status);
    if (!s.ok() || status / 100 != 2) {
      LogEvent(
          "tenant.burst_hook_failed",
          {{"hook", url}, {"error", s.ok() ? "status " + std::to_string(status) : s.message()}});
    }
  }
  while (!fits() && Clock::now() < deadline) std::this_thread::sleep_for(kPoll);
  if (fits()) return;
  {
    std::lock_guard lock(mu_);
    for (const std::string& id : plan.victims) {
      auto it = tenants_.find(id);
      if (it == tenants_.end() || it->second.record.state != TenantState::kRunning) continue;
      const TenantView v = ViewLocked(it->second);
      if (v.usage.used <= it->second.record.memory_request) continue;  // gave it back
      it->second.burst_killed = true;
      SignalLocked(it->second.record, SIGKILL);
    }
  }
  const auto killed_deadline = Clock::now() + kKillWait;
  while (!fits() && Clock::now() < killed_deadline) {
    reaper_wake_.notify_all();
    std::this_thread::sleep_for(kPoll);
  }
}

}  // namespace gpufrac::node
