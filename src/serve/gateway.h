// The gateway: one listening port, OpenAI-compatible routes, admission (per-model in-flight limit
// and a bounded queue with a timeout) and least-outstanding-requests routing over ready replicas.
// Everything runs on one Boost.Asio event loop thread: thousands of streams cost no threads, and
// the models, replicas, queues and metrics need no locks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"
#include "serve/deploy.h"
#include "serve/http_head.h"
#include "serve/replica.h"

namespace gpufrac::serve {

class ClientSession;
class ReplicaManager;

class Gateway {
 public:
  // `overrides` (the command line's) were applied to `spec` and are applied to every reload.
  Gateway(boost::asio::io_context& io, DeploySpec spec, std::string deploy_path,
          DeployOverrides overrides = {});
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds the port and starts the replica manager (which starts min_replicas of each model).
  Status Start();
  // Stops accepting and closes client connections; then deletes every replica's tenant (blocking
  // this thread, so call it after the loop has stopped).
  void Shutdown();
  // Graceful stop, first step: no new connections, new requests get 503; in-flight ones go on.
  void StopAccepting();
  // Requests in flight or queued, in any model.
  bool Busy() const;
  // Re-reads the deployment file; on error keeps everything as it was.
  Status Reload();

  // From client sessions: one complete request.
  void Handle(const std::shared_ptr<ClientSession>& session, RequestHead head, std::string body);

  // From exchanges and the replica manager.
  void Dispatch(Model& model);
  void Requeue(const std::shared_ptr<Exchange>& exchange, Model& model);
  void MarkSuspect(Replica& replica, const std::string& why);

  boost::asio::io_context& io() { return io_; }
  const DeploySpec& spec() const { return spec_; }
  std::map<std::string, std::shared_ptr<Model>>& models() { return models_; }
  uint16_t port() const { return port_; }

 private:
  void Accept();
  void Proxy(const std::shared_ptr<ClientSession>& session, const RequestHead& head,
             std::string body);
  void Admit(const std::shared_ptr<Exchange>& exchange, Model& model);
  std::shared_ptr<Replica> PickReplica(Model& model) const;
  std::string HealthBody() const;
  std::string ModelsBody() const;
  std::string MetricsText() const;
  bool Authorized(const RequestHead& head) const;

  boost::asio::io_context& io_;
  DeploySpec spec_;
  std::string deploy_path_;
  DeployOverrides overrides_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_pause_;  // after a failed accept
  bool accept_paused_ = false;
  uint64_t accept_failures_ = 0;
  uint16_t port_ = 0;
  std::map<std::string, std::shared_ptr<Model>> models_;
  std::unique_ptr<ReplicaManager> manager_;
  std::vector<std::weak_ptr<ClientSession>> sessions_;
  uint64_t reloads_ = 0, reload_failures_ = 0;
  bool draining_ = false;
  std::map<int, uint64_t> local_responses_;  // answered by the gateway itself, by status
  friend class ReplicaManager;
};

}  // namespace gpufrac::serve
