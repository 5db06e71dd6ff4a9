// Replicas' lives: started as node-agent tenants with the model's GPU share, health-checked
// before they enter rotation and while they serve, drained on scale-in, replaced when they crash
// or fail their checks, and sized by the autoscaler. Runs on the gateway's event loop (a tick
// every 100 ms); calls to the agent block, so they run on worker threads and post their results
// back to the loop.
#pragma once

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "serve/node_client.h"
#include "serve/replica.h"

namespace gpufrac::serve {

class Gateway;

class ReplicaManager {
 public:
  explicit ReplicaManager(Gateway& gateway);
  ~ReplicaManager();
  ReplicaManager(const ReplicaManager&) = delete;
  ReplicaManager& operator=(const ReplicaManager&) = delete;

  void Start();
  // Stops the tick, deletes every replica's tenant in parallel and waits (after the loop ended).
  void StopAll();
  // Requests are waiting for a model with no replica: decide now instead of at the next tick.
  void Wake(Model& model);
  // Takes a replica out of rotation and deletes it; the reconcile step replaces it.
  void Fail(Model& model, Replica& replica, const std::string& why);
  void Probe(Model& model, const std::shared_ptr<Replica>& replica);

 private:
  void Tick();
  void Autoscale(Model& model, int64_t now_ns);
  void Reconcile(Model& model, int64_t now_ns);
  void StartReplica(Model& model);
  // The agent refused the model's replica spec (400): logged once, no more starts until a reload,
  // and requests waiting with no replica to serve them get a 503 naming the cause at once.
  void ConfigError(Model& model, const Replica& replica, const std::string& why);
  bool TenantNameInUse(const std::string& tenant) const;
  void Drain(Model& model, Replica& replica, const std::string& why);
  void Stop(Model& model, const std::shared_ptr<Replica>& replica);
  // Deletes the replica's tenant on a worker; a delete the agent does not confirm is retried
  // (Reconcile) with backoff, and the replica stays listed until it is: no tenant is forgotten.
  void IssueDelete(const std::string& model_name, const std::shared_ptr<Replica>& replica,
                   int64_t grace_ms);
  // Whether a tenant of this gateway is being deleted: its memory is about to be free, so no batch
  // work is preempted meanwhile.
  bool DeletionPending() const;
  void SyncWithAgent();
  void SetState(Replica& replica, ReplicaState state, const std::string& why);
  // Runs fn on a worker thread; `then` runs on the loop with its result.
  void RunOnWorker(std::function<void()> fn);
  void ReapWorkers();

  Gateway& gateway_;
  NodeClient node_;
  boost::asio::steady_timer timer_;
  std::string tenant_prefix_;
  int64_t last_sync_ns_ = 0;
  bool syncing_ = false;
  bool stopped_ = false;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers_;
};

}  // namespace gpufrac::serve
