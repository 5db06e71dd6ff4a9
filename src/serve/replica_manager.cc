#include "serve/replica_manager.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <map>

#include "bench/clock.h"
#include "serve/exchange.h"
#include "serve/gateway.h"
#include "serve/health_probe.h"
#include "serve/preemption.h"
#include "serve/serve_log.h"

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;
using bench::NowNs;

constexpr int64_t kMs = 1'000'000;
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr int64_t kSyncIntervalNs = 1000 * kMs;
// A starting replica is probed this often, so that it enters rotation soon after it can serve.
constexpr int64_t kStartingProbeNs = 100 * kMs;
// SIGTERM-to-SIGKILL time for a drained replica (it has no requests left) and a failed one.
constexpr int64_t kStopGraceMs = 2000;
constexpr int64_t kFailedGraceMs = 500;
constexpr int64_t kMaxBackoffNs = 10'000 * kMs;
// Starts refused (or replicas that died before ready) in a row before the autoscaler stops asking
// for replicas the host cannot hold.
constexpr int kRefusedStartsBeforeCap = 3;

int64_t Backoff(int failures) {
  return std::min(kMaxBackoffNs, 500 * kMs << std::min(failures - 1, 10));
}

// A loopback port nobody listens on now; the replica binds it right after (a small race that a
// failed start, retried with another port, absorbs).
uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string Ms(int64_t ns) { return std::to_string(ns / kMs); }

}  // namespace

const char* ReplicaStateName(ReplicaState state) {
  switch (state) {
    case ReplicaState::kStarting:
      return "starting";
    case ReplicaState::kReady:
      return "ready";
    case ReplicaState::kDraining:
      return "draining";
    case ReplicaState::kStopping:
      return "stopping";
    case ReplicaState::kFailed:
      return "failed";
  }
  return "unknown";
}

int Model::CountActive() const {
  int n = 0;
  for (const auto& r : replicas) {
    if (!r->stale && (r->state == ReplicaState::kStarting || r->state == ReplicaState::kReady)) ++n;
  }
  return n;
}

int Model::CountReady() const {
  int n = 0;
  for (const auto& r : replicas) n += r->state == ReplicaState::kReady ? 1 : 0;
  return n;
}

ReplicaManager::ReplicaManager(Gateway& gateway)
    : gateway_(gateway),
      node_(gateway.spec().node_socket),
      timer_(gateway.io()),
      // Tenant names carry this process's id, so two gateways on one host never collide.
      tenant_prefix_("sv" + std::to_string(getpid())) {}

ReplicaManager::~ReplicaManager() {
  for (Worker& w : workers_) {
    if (w.thread.joinable()) w.thread.join();
  }
}

void ReplicaManager::Start() {
  for (auto& [name, model] : gateway_.models()) model->desired = model->spec.min_replicas;
  Tick();
}

void ReplicaManager::Tick() {
  if (stopped_) return;
  ReapWorkers();
  const int64_t now = NowNs();
  auto& models = gateway_.models();
  for (auto it = models.begin(); it != models.end();) {
    Model& model = *it->second;
    // Requests already answered (a queue or cold-start timeout) leave the queue here, not only
    // when the next one comes: they are neither load nor someone waiting for a replica.
    std::erase_if(model.queue, [](const auto& e) { return e->done(); });
    if (now - model.last_decision_ns >= gateway_.spec().autoscaler.interval_ms * kMs) {
      Autoscale(model, now);
    }
    Reconcile(model, now);
    if (model.removed && model.replicas.empty() && model.in_flight == 0) {
      LogEvent("model.removed", {{"model", model.spec.name}});
      it = models.erase(it);
    } else {
      ++it;
    }
  }
  if (!syncing_ && now - last_sync_ns_ >= kSyncIntervalNs) SyncWithAgent();
  timer_.expires_after(kTick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

void ReplicaManager::Wake(Model& model) {
  const int64_t now = NowNs();
  Autoscale(model, now);
  Reconcile(model, now);
}

void ReplicaManager::Autoscale(Model& model, int64_t now) {
  model.last_decision_ns = now;
  if (model.removed) {
    model.desired = 0;
    return;
  }
  const AutoscalerSpec& a = gateway_.spec().autoscaler;
  ModelMetrics& m = model.metrics;
  // Replicas of the previous spec that still serve count as placed: failing to start their
  // replacements must not make the count drop below them, which would drain them.
  int stale_serving = 0;
  for (const auto& r : model.replicas) stale_serving += r->stale && r->Routable() ? 1 : 0;
  const int placed = std::max(model.CountActive() + stale_serving, model.spec.min_replicas);
  if (model.start_failures >= kRefusedStartsBeforeCap && model.desired > placed) {
    // The host cannot hold more (or they die before serving): stop asking, so that the count
    // the autoscaler works from is what exists. A later scale-out tries again.
    LogEvent("autoscaler.decision",
             {{"model", model.spec.name},
              {"from", std::to_string(model.desired)},
              {"to", std::to_string(placed)},
              {"direction", "in"},
              {"reason", std::to_string(model.start_failures) +
                             " replica starts failed in a row; keeping the replicas that exist"}});
    model.last_reason = "replica starts failing";
    model.desired = placed;
  }
  // Only samples since the last change in capacity count: older ones describe other replicas.
  const int64_t window =
      std::min(a.window_ms * kMs, std::max<int64_t>(kMs, now - model.window_start_ns));
  ScaleInputs in;
  in.now_ms = now / kMs;
  in.current = model.desired;
  in.ready = 0;
  for (const auto& r : model.replicas) in.ready += r->Routable() && !r->stale ? 1 : 0;
  const bool enough = m.ttft_window.Count(now, window) >= static_cast<size_t>(a.min_samples);
  in.ttft_p95_ms = enough ? m.ttft_window.Percentile(now, window, 95) : -1;
  in.queue_wait_p95_ms =
      m.queue_wait_window.Count(now, window) >= static_cast<size_t>(a.min_samples)
          ? m.queue_wait_window.Percentile(now, window, 95)
          : -1;
  in.load = model.in_flight + static_cast<double>(model.queue.size());
  in.idle_ms = (now - m.last_request_ns) / kMs;
  in.waiting_at_zero = model.desired == 0 && !model.queue.empty();
  const ScaleDecision d = Decide(model.spec, a, in, &model.scale);
  if (d.desired == model.desired) return;
  LogEvent("autoscaler.decision", {{"model", model.spec.name},
                                   {"from", std::to_string(model.desired)},
                                   {"to", std::to_string(d.desired)},
                                   {"direction", d.direction},
                                   {"reason", d.reason}});
  (d.desired > model.desired ? model.scale_outs : model.scale_ins) += 1;
  model.last_reason = d.reason;
  model.desired = d.desired;
}

void ReplicaManager::Reconcile(Model& model, int64_t now) {
  std::vector<std::shared_ptr<Replica>> starting, ready, stale_ready;
  int fresh_ready = 0;
  const std::vector<std::shared_ptr<Replica>> replicas = model.replicas;  // Stop may erase
  for (const auto& r : replicas) {
    if (r->state == ReplicaState::kStarting) {
      if (r->stale) {
        Stop(model, r);
        continue;
      }
      // Counted from the tenant's creation: a create that waited for room is not a slow start.
      if (r->tenant_created && now - r->tenant_created_ns > model.spec.start_timeout_ms * kMs) {
        Fail(model, *r,
             "not healthy within start_timeout (" + std::to_string(model.spec.start_timeout_ms) +
                 "ms)");
        continue;
      }
      starting.push_back(r);
    } else if (r->state == ReplicaState::kReady) {
      (r->stale ? stale_ready : ready).push_back(r);
      fresh_ready += r->stale ? 0 : 1;
    } else if (r->state == ReplicaState::kDraining) {
      if (r->outstanding == 0 || now - r->state_since_ns > model.spec.drain_grace_ms * kMs) {
        Stop(model, r);
      }
    } else if (r->state == ReplicaState::kStopping && r->delete_failures > 0 && !r->deleting &&
               !r->creating && now >= r->delete_retry_ns) {
      IssueDelete(model.spec.name, r, kStopGraceMs);
    }
    if ((r->state == ReplicaState::kStarting || r->state == ReplicaState::kReady) && !r->probing &&
        r->tenant_created && now >= r->next_probe_ns) {
      Probe(model, r);
    }
  }
  const int active = static_cast<int>(starting.size() + ready.size());
  if (active < model.desired && now >= model.start_backoff_until_ns && model.config_error.empty()) {
    for (int i = active; i < model.desired; ++i) StartReplica(model);
  }
  if (active > model.desired) {
    // Starting replicas go first (nobody uses them), then the ready ones with least in flight.
    std::sort(ready.begin(), ready.end(),
              [](const auto& a, const auto& b) { return a->outstanding < b->outstanding; });
    int excess = active - model.desired;
    for (auto it = starting.rbegin(); it != starting.rend() && excess > 0; ++it, --excess) {
      Stop(model, *it);
    }
    for (size_t i = 0; i < ready.size() && excess > 0; ++i, --excess) {
      Drain(model, *ready[i], "scale in");
    }
  }
  // After a reload changed the replica spec: old replicas serve until new ones are ready.
  const int keep = std::max(0, model.desired - fresh_ready);
  std::sort(stale_ready.begin(), stale_ready.end(),
            [](const auto& a, const auto& b) { return a->outstanding < b->outstanding; });
  for (size_t i = keep; i < stale_ready.size(); ++i) {
    Drain(model, *stale_ready[i - keep], "replaced after a reload");
  }
}

bool ReplicaManager::TenantNameInUse(const std::string& tenant) const {
  for (const auto& [name, model] : gateway_.models()) {
    for (const auto& r : model->replicas) {
      if (r->tenant == tenant) return true;
    }
  }
  return false;
}

void ReplicaManager::StartReplica(Model& model) {
  auto replica = std::make_shared<Replica>();
  replica->model = model.spec.name;
  // A name no replica of any model holds: after a reload a removed model's replicas may still be
  // draining under a name that a new model's would repeat ('team/a' and 'team-a').
  do {
    replica->tenant = tenant_prefix_ + "-" + TenantSafeName(model.spec.name) + "-" +
                      std::to_string(model.next_seq++);
  } while (TenantNameInUse(replica->tenant));
  replica->port = FreePort();
  replica->created_ns = replica->state_since_ns = NowNs();
  replica->creating = true;
  model.replicas.push_back(replica);
  const std::vector<std::string> command = ExpandCommand(
      model.spec.command, {"127.0.0.1", model.spec.name, replica->tenant, replica->port});
  std::string joined;
  for (const std::string& arg : command) joined += (joined.empty() ? "" : " ") + arg;
  LogEvent("replica.starting",
           {{"model", model.spec.name}, {"replica", replica->tenant}, {"command", joined}});
  const GpuShare share = model.spec.share;
  PreemptionSpec preemption = gateway_.spec().preemption;
  preemption.enabled = preemption.enabled && !DeletionPending();
  const std::string name = replica->tenant;
  const std::string model_name = model.spec.name;
  RunOnWorker([this, replica, command, share, preemption, name, model_name] {
    auto result = std::make_shared<PreemptionResult>();
    const Status s = CreateWithPreemption(node_, name, command, share, preemption.enabled,
                                          preemption.grace_ms, result.get());
    asio::post(gateway_.io(), [this, replica, result, s, model_name] {
      if (stopped_) return;
      replica->creating = false;
      auto& models = gateway_.models();
      auto it = models.find(model_name);
      std::shared_ptr<Model> owner = it == models.end() ? nullptr : it->second;
      for (const std::string& victim : result->preempted) {
        LogEvent("preemption", {{"model", model_name},
                                {"replica", replica->tenant},
                                {"preempted", victim},
                                {"policy", "batch tenants: fewest on one GPU, youngest first"}});
        if (owner) ++owner->preemptions;
        for (auto& [n, m] : models) {
          const std::vector<std::shared_ptr<Replica>> replicas = m->replicas;
          for (const auto& r : replicas) {
            if (r->tenant == victim) Fail(*m, *r, "preempted by " + replica->tenant);
          }
        }
      }
      if (!s.ok()) {
        replica->state = ReplicaState::kFailed;
        replica->reason = s.message();
        // A reload that changed the replica spec while this create was in flight marked it stale
        // (and cleared config_error): the refusal was of the old spec, and must not block the
        // new one until yet another reload. It counts as a plain failed start.
        if (result->invalid && !replica->stale) {
          if (owner) ConfigError(*owner, *replica, s.message());
        } else {
          LogEvent("replica.start_failed",
                   {{"model", model_name}, {"replica", replica->tenant}, {"reason", s.message()}});
          if (owner) {
            ++owner->start_failures;
            owner->start_backoff_until_ns = NowNs() + Backoff(owner->start_failures);
          }
        }
        if (result->maybe_created) {
          // No answer came: the agent may have created it. Deleted by name (unknown is fine).
          replica->tenant_created = true;
          replica->state = ReplicaState::kStopping;
          IssueDelete(model_name, replica, kFailedGraceMs);
        } else if (owner) {
          std::erase(owner->replicas, replica);
        }
        return;
      }
      replica->tenant_created = true;
      replica->tenant_created_ns = NowNs();
      replica->next_probe_ns = NowNs() + 20 * kMs;
      LogEvent("replica.created", {{"model", model_name},
                                   {"replica", replica->tenant},
                                   {"gpu", std::to_string(result->created.gpu)},
                                   {"pid", std::to_string(result->created.pid)},
                                   {"port", std::to_string(replica->port)}});
      // Stopped while its tenant was being created: delete it now.
      if (owner && replica->state == ReplicaState::kStopping) {
        replica->state = ReplicaState::kDraining;  // lets Stop run again
        Stop(*owner, replica);
      }
    });
  });
}

void ReplicaManager::ConfigError(Model& model, const Replica& replica, const std::string& why) {
  // Starts issued together (a scale-out of several) are refused together: said once.
  if (!model.config_error.empty()) return;
  model.config_error = why;
  LogEvent("replica.config_error",
           {{"model", model.spec.name},
            {"replica", replica.tenant},
            {"reason", why},
            {"action", "no replica of this model is started until the deployment is reloaded"}});
  if (model.CountReady() > 0) return;  // replicas of the previous spec still serve the queue
  for (const auto& ex : model.queue) {
    ex->Reject(503, "model '" + model.spec.name + "' cannot start a replica: " + why,
               ErrorKind::kRejected, 0);
  }
  model.queue.clear();
}

void ReplicaManager::Probe(Model& model, const std::shared_ptr<Replica>& replica) {
  replica->probing = true;
  const HealthCheck& h = model.spec.health;
  const std::string model_name = model.spec.name;
  ProbeHealth(
      gateway_.io(), replica->port, h.path, h.timeout_ms,
      [this, replica, model_name](bool healthy, const std::string& why) {
        replica->probing = false;
        if (stopped_) return;
        auto it = gateway_.models().find(model_name);
        if (it == gateway_.models().end()) return;
        Model& m = *it->second;
        const bool starting = replica->state == ReplicaState::kStarting;
        if (!starting && replica->state != ReplicaState::kReady) return;
        const int64_t now = NowNs();
        replica->next_probe_ns =
            now + (starting ? kStartingProbeNs : m.spec.health.interval_ms * kMs);
        if (healthy) {
          replica->health_failures = 0;
          if (starting) {
            replica->ready_ns = now;
            m.start_failures = 0;
            m.window_start_ns = now;
            SetState(*replica, ReplicaState::kReady, "");
            LogEvent("replica.ready", {{"model", m.spec.name},
                                       {"replica", replica->tenant},
                                       {"port", std::to_string(replica->port)},
                                       {"start_ms", Ms(now - replica->created_ns)}});
          } else if (replica->suspect) {
            replica->suspect = false;
            LogEvent("replica.recovered", {{"model", m.spec.name}, {"replica", replica->tenant}});
          }
          gateway_.Dispatch(m);
          return;
        }
        if (starting) return;  // not up yet; start_timeout bounds the wait
        ++replica->health_failures;
        ++replica->metrics.health_failures;
        if (replica->suspect || replica->health_failures >= m.spec.health.failures) {
          Fail(m, *replica, "health check failed: " + why);
        }
      });
}

void ReplicaManager::SetState(Replica& replica, ReplicaState state, const std::string& why) {
  replica.state = state;
  replica.state_since_ns = NowNs();
  if (!why.empty()) replica.reason = why;
  if (state != ReplicaState::kReady) {
    boost::system::error_code ignored;
    for (auto& s : replica.idle) s->close(ignored);
    replica.idle.clear();
  }
}

void ReplicaManager::Fail(Model& model, Replica& replica, const std::string& why) {
  if (replica.state == ReplicaState::kFailed || replica.state == ReplicaState::kStopping) return;
  SetState(replica, ReplicaState::kFailed, why);
  ++model.replicas_failed;
  if (replica.ready_ns == 0 && replica.tenant_created) {
    // It never served: its replacement waits a backoff, as after a refused start, instead of
    // crash-looping every tick.
    ++model.start_failures;
    model.start_backoff_until_ns = NowNs() + Backoff(model.start_failures);
  }
  model.window_start_ns = NowNs();
  LogEvent("replica.failed", {{"model", model.spec.name},
                              {"replica", replica.tenant},
                              {"reason", why},
                              {"in_flight", std::to_string(replica.outstanding)}});
  for (const auto& r : model.replicas) {
    if (r.get() == &replica) {
      Stop(model, r);
      break;
    }
  }
}

void ReplicaManager::Drain(Model& model, Replica& replica, const std::string& why) {
  if (replica.state != ReplicaState::kReady) return;
  SetState(replica, ReplicaState::kDraining, why);
  model.window_start_ns = NowNs();
  LogEvent("replica.draining", {{"model", model.spec.name},
                                {"replica", replica.tenant},
                                {"reason", why},
                                {"in_flight", std::to_string(replica.outstanding)}});
}

void ReplicaManager::Stop(Model& model, const std::shared_ptr<Replica>& replica) {
  if (replica->state == ReplicaState::kStopping) return;
  const bool failed = replica->state == ReplicaState::kFailed;
  SetState(*replica, ReplicaState::kStopping, "");
  if (replica->creating) return;  // deleted once the agent answers the create
  if (!replica->tenant_created) {
    std::erase(model.replicas, replica);
    return;
  }
  LogEvent("replica.stopping", {{"model", model.spec.name},
                                {"replica", replica->tenant},
                                {"in_flight", std::to_string(replica->outstanding)}});
  IssueDelete(model.spec.name, replica, failed ? kFailedGraceMs : kStopGraceMs);
}

void ReplicaManager::IssueDelete(const std::string& model_name,
                                 const std::shared_ptr<Replica>& replica, int64_t grace_ms) {
  replica->deleting = true;
  RunOnWorker([this, replica, model_name, grace_ms] {
    const Status s = node_.DeleteTenant(replica->tenant, grace_ms);
    asio::post(gateway_.io(), [this, replica, model_name, s] {
      replica->deleting = false;
      if (stopped_) return;
      if (!s.ok()) {
        // Kept (and so kept by StopAll too) until the agent confirms the tenant is gone.
        ++replica->delete_failures;
        replica->delete_retry_ns = NowNs() + Backoff(replica->delete_failures);
        LogEvent("replica.delete_failed", {{"model", model_name},
                                           {"replica", replica->tenant},
                                           {"attempts", std::to_string(replica->delete_failures)},
                                           {"reason", s.message()}});
        return;
      }
      LogEvent("replica.stopped",
               {{"model", model_name}, {"replica", replica->tenant}, {"result", "deleted"}});
      auto it = gateway_.models().find(model_name);
      if (it != gateway_.models().end()) std::erase(it->second->replicas, replica);
    });
  });
}

bool ReplicaManager::DeletionPending() const {
  for (const auto& [name, model] : gateway_.models()) {
    for (const auto& r : model->replicas) {
      if (r->deleting) return true;
    }
  }
  return false;
}

void ReplicaManager::SyncWithAgent() {
  syncing_ = true;
  const int64_t started = NowNs();
  last_sync_ns_ = started;
  RunOnWorker([this, started] {
    auto tenants = std::make_shared<std::vector<TenantInfo>>();
    const Status s = node_.ListTenants(tenants.get());
    asio::post(gateway_.io(), [this, tenants, s, started] {
      syncing_ = false;
      if (stopped_) return;
      if (!s.ok()) {
        LogEvent("agent.unreachable", {{"reason", s.message()}});
        return;
      }
      std::map<std::string, const TenantInfo*> by_id;
      for (const TenantInfo& t : *tenants) by_id[t.id] = &t;
      for (auto& [name, model] : gateway_.models()) {
        std::vector<std::shared_ptr<Replica>> gone;
        for (const auto& r : model->replicas) {
          const bool live = r->state == ReplicaState::kStarting ||
                            r->state == ReplicaState::kReady || r->state == ReplicaState::kDraining;
          if (!live || !r->tenant_created || r->tenant_created_ns > started) continue;
          auto it = by_id.find(r->tenant);
          if (it == by_id.end() || it->second->state == "exited") gone.push_back(r);
        }
        for (const auto& r : gone) {
          const auto it = by_id.find(r->tenant);
          Fail(*model, *r,
               it == by_id.end() ? "its tenant vanished from the node agent"
                                 : "its tenant exited: " + it->second->reason);
        }
      }
    });
  });
}

void ReplicaManager::RunOnWorker(std::function<void()> fn) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back({std::thread([fn = std::move(fn), done] {
                        fn();
                        done->store(true);
                      }),
                      done});
}

void ReplicaManager::ReapWorkers() {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReplicaManager::StopAll() {
  stopped_ = true;
  timer_.cancel();
  // Every replica this gateway may have created, whatever the loop last heard about it, deleted
  // at once: a create still waiting for room on a worker must not hold the others up.
  std::vector<std::string> late;  // creates in flight: deleted again once they have answered
  std::vector<std::thread> deletions;
  for (auto& [name, model] : gateway_.models()) {
    for (const auto& r : model->replicas) {
      const std::string tenant = r->tenant;
      if (r->creating) late.push_back(tenant);
      deletions.emplace_back([this, tenant] { node_.DeleteTenant(tenant, kStopGraceMs); });
      LogEvent("replica.stopping", {{"model", name}, {"replica", tenant}, {"reason", "shutdown"}});
    }
    model->replicas.clear();
  }
  for (std::thread& t : deletions) t.join();
  for (Worker& w : workers_) w.thread.join();
  workers_.clear();
  deletions.clear();
  for (const std::string& tenant : late) {
    deletions.emplace_back([this, tenant] { node_.DeleteTenant(tenant, kStopGraceMs); });
  }
  for (std::thread& t : deletions) t.join();
}

}  // namespace gpufrac::serve
