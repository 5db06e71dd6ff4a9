// Memory-burst reclaim (docs/node.md): when a request fits nowhere, take back what this agent's
// tenants borrowed above their requests: notice (signal and/or HTTP hook), deadline, kill.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
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

void Agent::LogNotified(const std::string& id, int gpu, int signal, const std::string& hook) const {
  LogEvent("tenant.burst_notified",
           {{"id", id},
            {"gpu", std::to_string(gpu)},
            {"signal", signal > 0 ? std::to_string(signal) : "none"},
            {"hook", hook},
            {"deadline_ms", std::to_string(config_.burst_reclaim_deadline_ms)}});
}

void Agent::ReclaimBurst(const BurstPlan& plan, uint64_t asked) {
  using Clock = std::chrono::steady_clock;
  const size_t pos = static_cast<size_t>(plan.gpu);
  const uint64_t total = gpus_[pos].total_bytes;
  auto fits = [&] { return ledgers_[pos]->Committed() + asked <= total; };
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.burst_reclaim_deadline_ms);
  struct Hook {
    std::string id, url, body;
    int signal = 0;  // the victim's signal, when it was also told by it; 0 otherwise
  };
  std::vector<Hook> hooks;          // called without mu_
  std::vector<std::string> untold;  // victims nobody could tell: nothing to wait for
  bool told_any = false;            // some victim was told (by signal, or a hook that answered)
  // Victims this reclaim killed. Not Tenant::burst_killed: that outlives the reclaim on an
  // attach-only tenant, whose new members can borrow again and must then be killed again.
  std::set<std::string> killed;
  {
    std::lock_guard lock(mu_);
    for (const std::string& id : plan.victims) {
      auto it = tenants_.find(id);
      if (it == tenants_.end()) continue;
      const TenantRecord& r = it->second.record;
      // Notice goes to the command's process only, which decides how to give memory back; an
      // attach-only tenant has no command, so each process that joined it gets it.
      bool signalled = false;  // some live process of it got the signal
      if (r.burst_signal > 0 && ProcessIsAlive(r.pid, r.pid_start) &&
          kill(r.pid, r.burst_signal) == 0) {
        signalled = true;
      }
      for (const auto& [pid, start] : r.attached) {
        if (r.burst_signal > 0 && ProcessIsAlive(pid, start) && kill(pid, r.burst_signal) == 0) {
          signalled = true;
        }
      }
      if (!r.burst_hook.empty()) {
        const uint64_t used = ViewLocked(it->second).usage.used;
        const nlohmann::json notice = {
            {"tenant", id},
            {"gpu", plan.gpu},
            {"give_back_bytes", used > r.memory_request ? used - r.memory_request : 0},
            {"deadline_ms", config_.burst_reclaim_deadline_ms}};
        // Logged once the hook's answer says whether the notice arrived.
        hooks.push_back({id, r.burst_hook, notice.dump(), signalled ? r.burst_signal : 0});
        continue;
      }
      if (!signalled) {
        // Waiting out the deadline for a tenant that was never told would only delay the request
        // that needs its memory.
        LogEvent("tenant.burst_reclaiming",
                 {{"id", id},
                  {"gpu", std::to_string(plan.gpu)},
                  {"reason", r.burst_signal > 0 ? "its burst_signal reached no live process"
                                                : "no burst_signal or burst_hook to notify"}});
        untold.push_back(id);
        continue;
      }
      told_any = true;
      LogNotified(id, plan.gpu, r.burst_signal, "none");
    }
    KillBorrowersLocked(untold, &killed);
  }
  bool killed_any = !untold.empty();
  for (const Hook& hook : hooks) {
    // Bounded: a hook that hangs must not hold the reclaim past its deadline.
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    int status = 0;
    Status s = HttpPostUrl(hook.url, hook.body,
                           static_cast<uint32_t>(std::max<int64_t>(left.count(), 100)), &status);
    if (s.ok() && status / 100 == 2) {
      told_any = true;
      LogNotified(hook.id, plan.gpu, hook.signal, hook.url);
      continue;
    }
    LogEvent("tenant.burst_hook_failed",
             {{"id", hook.id},
              {"hook", hook.url},
              {"error", s.ok() ? "status " + std::to_string(status) : s.message()}});
    if (hook.signal > 0) {
      told_any = true;  // its signal did arrive
      LogNotified(hook.id, plan.gpu, hook.signal, "failed");
    } else {
      // Its only notice did not arrive: like a victim with none, it is not waited for.
      LogEvent("tenant.burst_reclaiming",
               {{"id", hook.id},
                {"gpu", std::to_string(plan.gpu)},
                {"reason", "its burst_hook failed and it has no burst_signal"}});
      std::lock_guard lock(mu_);
      KillBorrowersLocked({hook.id}, &killed);
      killed_any = true;
    }
  }
  // Only victims that were told get the deadline to give memory back; the memory of those killed
  // meanwhile is reaped at once rather than at the next reap_interval.
  while (told_any && !fits() && Clock::now() < deadline) {
    if (killed_any) reaper_wake_.notify_all();
    std::this_thread::sleep_for(kPoll);
  }
  if (fits()) return;
  {
    std::lock_guard lock(mu_);
    KillBorrowersLocked(plan.victims, &killed);
  }
  const auto killed_deadline = Clock::now() + kKillWait;
  while (!fits() && Clock::now() < killed_deadline) {
    reaper_wake_.notify_all();
    std::this_thread::sleep_for(kPoll);
  }
}

void Agent::KillBorrowersLocked(const std::vector<std::string>& ids,
                                std::set<std::string>* killed) {
  for (const std::string& id : ids) {
    auto it = tenants_.find(id);
    if (it == tenants_.end() || it->second.record.state != TenantState::kRunning) continue;
    if (killed->count(id) != 0) continue;  // already killed by this reclaim
    const TenantView v = ViewLocked(it->second);
    if (v.usage.used <= it->second.record.memory_request) continue;  // gave it back
    killed->insert(id);
    it->second.burst_killed = true;
    SignalLocked(it->second.record, SIGKILL);
  }
}

}  // namespace gpufrac::node
