#include "serve/gateway.h"

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "bench/clock.h"
#include "serve/client_session.h"
#include "serve/exchange.h"
#include "serve/replica_manager.h"
#include "serve/request_model.h"
#include "serve/serve_log.h"

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;
using bench::NowNs;
using nlohmann::json;

// Headers a replica may want from the client; everything else (keys included) stays here.
constexpr const char* kForwardedHeaders[] = {"accept", "x-gpufrac-request-id", "x-request-id"};
constexpr int kRetryAfterS = 1;
// After a failed accept (out of file descriptors), how long before the next try.
constexpr int kAcceptPauseMs = 100;

std::shared_ptr<Model> NewModel(const ModelSpec& spec) {
  auto model = std::make_shared<Model>();
  model->spec = spec;
  model->desired = spec.min_replicas;
  model->metrics.last_request_ns = NowNs();
  model->window_start_ns = NowNs();
  return model;
}

}  // namespace

Gateway::Gateway(asio::io_context& io, DeploySpec spec, std::string deploy_path,
                 DeployOverrides overrides)
    : io_(io),
      spec_(std::move(spec)),
      deploy_path_(std::move(deploy_path)),
      overrides_(std::move(overrides)),
      acceptor_(io),
      accept_pause_(io) {}

Gateway::~Gateway() = default;

Status Gateway::Start() {
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(spec_.gateway.host, ec);
  if (ec) return Status::Error("gateway.listen: '" + spec_.gateway.host + "' is not an IP address");
  const asio::ip::tcp::endpoint endpoint(address, spec_.gateway.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(4096, ec);
  if (ec) {
    return Status::Error("cannot listen on " + spec_.gateway.host + ":" +
                         std::to_string(spec_.gateway.port) + ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  for (const ModelSpec& m : spec_.models) models_[m.name] = NewModel(m);
  manager_ = std::make_unique<ReplicaManager>(*this);
  manager_->Start();
  Accept();
  LogEvent("gateway.listening", {{"address", spec_.gateway.host + ":" + std::to_string(port_)},
                                 {"models", std::to_string(models_.size())},
                                 {"node", spec_.node_socket}});
  return Status::Ok();
}

void Gateway::Accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors (EMFILE/ENFILE) or memory: the connection stays in the backlog and
      // accept fails again at once, so retrying now would spin the event loop that every stream
      // in flight depends on. Pause; the backlog holds the clients meanwhile.
      ++accept_failures_;
      if (!accept_paused_) {
        LogEvent("gateway.accept_failed",
                 {{"reason", ec.message()}, {"retry_in_ms", std::to_string(kAcceptPauseMs)}});
      }
      accept_paused_ = true;
      accept_pause_.expires_after(std::chrono::milliseconds(kAcceptPauseMs));
      accept_pause_.async_wait([this](const boost::system::error_code& wait_ec) {
        if (!wait_ec) Accept();
      });
      return;
    }
    if (accept_paused_) {
      accept_paused_ = false;
      LogEvent("gateway.accept_resumed", {{"failures", std::to_string(accept_failures_)}});
    }
    auto session = std::make_shared<ClientSession>(*this, std::move(socket));
    if (sessions_.size() > 1024 && sessions_.size() % 1024 == 0) {
      std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
    }
    sessions_.push_back(session);
    session->Start();
    Accept();
  });
}

void Gateway::Shutdown() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_pause_.cancel();
  for (auto& weak : sessions_) {
    if (auto s = weak.lock()) s->Close();
  }
  sessions_.clear();
  if (manager_) manager_->StopAll();
}

void Gateway::StopAccepting() {
  draining_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_pause_.cancel();
}

bool Gateway::Busy() const {
  for (const auto& [name, m] : models_) {
    if (m->in_flight > 0) return true;
    for (const auto& ex : m->queue) {
      if (!ex->done()) return true;
    }
  }
  return false;
}

bool Gateway::Authorized(const RequestHead& head) const {
  if (spec_.gateway.api_keys.empty()) return true;
  const std::string auth = head.Header("authorization");
  const std::string prefix = "Bearer ";
  if (auth.rfind(prefix, 0) != 0) return false;
  const std::string key = auth.substr(prefix.size());
  // Every key is compared, each in time that does not depend on where the bytes differ: an early
  // exit would tell a caller, by timing, how much of a key it has right.
  bool match = false;
  for (const std::string& k : spec_.gateway.api_keys) {
    unsigned char differ = k.size() == key.size() ? 0 : 1;
    for (size_t i = 0; i < k.size(); ++i) {
      differ |= static_cast<unsigned char>(k[i] ^ (i < key.size() ? key[i] : 0));
    }
    match |= differ == 0;
  }
  return match;
}

void Gateway::Handle(const std::shared_ptr<ClientSession>& session, RequestHead head,
                     std::string body) {
  const std::string path = head.target.substr(0, head.target.find('?'));
  auto reply = [&](int status, const std::string& message) {
    ++local_responses_[status];
    session->Reply(ErrorResponse(status, message, true), false);
  };
  const bool api = path.rfind("/v1/", 0) == 0 || path.rfind("/admin/", 0) == 0;
  if (api && !Authorized(head)) {
    reply(401, "missing or unknown API key (send Authorization: Bearer <key>)");
    return;
  }
  // The one flat route table.
  enum class Kind { kHealth, kModels, kMetrics, kReload, kProxy };
  struct Route {
    const char* method;
    const char* path;
    Kind kind;
  };
  static constexpr Route kRoutes[] = {
      {"GET", "/health", Kind::kHealth},
      {"GET", "/v1/models", Kind::kModels},
      {"GET", "/metrics", Kind::kMetrics},
      {"POST", "/admin/reload", Kind::kReload},
      {"POST", "/v1/chat/completions", Kind::kProxy},
      {"POST", "/v1/completions", Kind::kProxy},
      {"POST", "/v1/embeddings", Kind::kProxy},
  };
  const Route* route = nullptr;
  bool path_known = false;
  for (const Route& r : kRoutes) {
    if (path != r.path) continue;
    path_known = true;
    if (head.method == r.method) route = &r;
  }
  if (!route) {
    reply(path_known ? 405 : 404,
          path_known ? "method " + head.method + " not allowed on " + path : "no route " + path);
    return;
  }
  switch (route->kind) {
    case Kind::kHealth:
      session->Reply(Response(200, "application/json", HealthBody(), true), false);
      return;
    case Kind::kModels:
      session->Reply(Response(200, "application/json", ModelsBody(), true), false);
      return;
    case Kind::kMetrics:
      session->Reply(Response(200, "text/plain; version=0.0.4", MetricsText(), true), false);
      return;
    case Kind::kReload: {
      const Status s = Reload();
      if (!s.ok()) {
        reply(400, "reload refused, the running deployment is unchanged: " + s.message());
        return;
      }
      json ok = {{"status", "reloaded"}, {"models", json::array()}};
      for (const auto& [name, m] : models_) ok["models"].push_back(name);
      session->Reply(Response(200, "application/json", ok.dump() + "\n", true), false);
      return;
    }
    case Kind::kProxy:
      if (draining_) {
        ++local_responses_[503];
        session->Reply(ErrorResponse(503, "the gateway is shutting down", false, kRetryAfterS),
                       true);
        return;
      }
      Proxy(session, head, std::move(body));
  }
}

void Gateway::Proxy(const std::shared_ptr<ClientSession>& session, const RequestHead& head,
                    std::string body) {
  const int64_t arrival = NowNs();
  auto reply = [&](int status, const std::string& message) {
    ++local_responses_[status];
    session->Reply(ErrorResponse(status, message, true), false);
  };
  std::string name;
  switch (FindRequestModel(body, &name)) {
    case RequestModel::kNotJson:
      reply(400, "request body is not valid JSON");
      return;
    case RequestModel::kNotObject:
      reply(400, "request body must be a JSON object");
      return;
    case RequestModel::kMissing:
      reply(400, "missing 'model': the name of a served model, a string");
      return;
    case RequestModel::kFound:
      break;
  }
  auto it = models_.find(name);
  if (it == models_.end() || it->second->removed) {
    std::string served;
    for (const auto& [n, m] : models_) {
      if (!m->removed) served += (served.empty() ? "" : ", ") + n;
    }
    reply(404, "model '" + name + "' is not served here (served: " + served + ")");
    return;
  }
  std::string forwarded;
  for (const char* h : kForwardedHeaders) {
    const std::string value = head.Header(h);
    if (!value.empty()) forwarded += std::string(h) + ": " + value + "\r\n";
  }
  auto exchange = std::make_shared<Exchange>(*this, session, it->second, head.target,
                                             std::move(forwarded), std::move(body), arrival);
  session->AttachExchange(exchange);
  Admit(exchange, *it->second);
}

void Gateway::Admit(const std::shared_ptr<Exchange>& exchange, Model& model) {
  ++model.metrics.requests;
  model.metrics.last_request_ns = exchange->arrival_ns();
  std::erase_if(model.queue, [](const auto& e) { return e->done(); });
  if (model.queue.empty()) {
    if (auto replica = PickReplica(model)) {
      exchange->Start(replica);
      return;
    }
  }
  const Admission& limits = model.spec.admission;
  const bool none_ready = model.CountReady() == 0;
  if (none_ready && !model.config_error.empty()) {
    // No replica can start until the deployment is fixed and reloaded: waiting cannot help.
    exchange->Reject(
        503, "model '" + model.spec.name + "' cannot start a replica: " + model.config_error,
        ErrorKind::kRejected, 0);
    return;
  }
  // Scaling from zero (or still starting its first replica after it): hold, then 503.
  const bool cold = none_ready && model.spec.scale_to_zero.enabled;
  const int status = cold || none_ready ? 503 : 429;
  const int max_queue = cold ? std::max(1, limits.max_queue) : limits.max_queue;
  if (static_cast<int>(model.queue.size()) >= max_queue) {
    exchange->Reject(status,
                     "model '" + model.spec.name + "' is at capacity (" +
                         std::to_string(model.in_flight) + " in flight, " +
                         std::to_string(model.queue.size()) + " queued)" +
                         (cold ? " and scaling from zero" : "") + "; retry later",
                     ErrorKind::kRejected, kRetryAfterS);
    return;
  }
  model.queue.push_back(exchange);
  exchange->Enqueue(cold ? model.spec.scale_to_zero.hold_ms : limits.queue_timeout_ms, status);
  if (cold) manager_->Wake(model);
}

void Gateway::Requeue(const std::shared_ptr<Exchange>& exchange, Model& model) {
  model.queue.push_front(exchange);
  const bool none_ready = model.CountReady() == 0;
  exchange->Enqueue(std::max<int64_t>(model.spec.admission.queue_timeout_ms, 1000),
                    none_ready ? 503 : 429);
  Dispatch(model);
}

void Gateway::Dispatch(Model& model) {
  while (!model.queue.empty()) {
    if (model.queue.front()->done()) {
      model.queue.pop_front();
      continue;
    }
    auto replica = PickReplica(model);
    if (!replica) return;
    auto exchange = model.queue.front();
    model.queue.pop_front();
    exchange->Start(replica);
  }
}

std::shared_ptr<Replica> Gateway::PickReplica(Model& model) const {
  std::shared_ptr<Replica> best;
  const int limit = model.spec.admission.max_inflight_per_replica;
  for (const auto& r : model.replicas) {
    if (!r->Routable() || r->outstanding >= limit) continue;
    if (!best || r->outstanding < best->outstanding ||
        (r->outstanding == best->outstanding &&
         (best->stale > r->stale ||
          (best->stale == r->stale && r->metrics.requests < best->metrics.requests)))) {
      best = r;
    }
  }
  return best;
}

void Gateway::MarkSuspect(Replica& replica, const std::string& why) {
  if (replica.state != ReplicaState::kReady || replica.suspect) return;
  replica.suspect = true;
  boost::system::error_code ignored;
  for (auto& s : replica.idle) s->close(ignored);
  replica.idle.clear();
  LogEvent("replica.suspect",
           {{"model", replica.model}, {"replica", replica.tenant}, {"reason", why}});
  auto it = models_.find(replica.model);
  if (it == models_.end()) return;
  for (const auto& r : it->second->replicas) {
    if (r.get() == &replica && !r->probing) manager_->Probe(*it->second, r);
  }
}

std::string Gateway::HealthBody() const {
  json models = json::object();
  for (const auto& [name, m] : models_) {
    int starting = 0;
    for (const auto& r : m->replicas) starting += r->state == ReplicaState::kStarting ? 1 : 0;
    models[name] = {{"ready", m->CountReady()},
                    {"starting", starting},
                    {"desired", m->desired},
                    {"in_flight", m->in_flight},
                    {"queued", m->queue.size()}};
    if (!m->config_error.empty()) models[name]["error"] = m->config_error;
  }
  return json({{"status", "ok"}, {"models", models}}).dump() + "\n";
}

std::string Gateway::ModelsBody() const {
  json data = json::array();
  for (const auto& [name, m] : models_) {
    if (m->removed) continue;
    data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "gpufrac"}});
  }
  return json({{"object", "list"}, {"data", data}}).dump() + "\n";
}

Status Gateway::Reload() {
  DeploySpec next;
  Status s = LoadDeployFile(deploy_path_, &next);
  overrides_.ApplyTo(&next);  // --listen and --node still win over the file
  if (s.ok() &&
      (next.gateway.host != spec_.gateway.host || next.gateway.port != spec_.gateway.port)) {
    s = Status::Error(deploy_path_ +
                      ": gateway.listen: cannot change on reload (restart for that)");
  }
  if (s.ok() && next.node_socket != spec_.node_socket) {
    s = Status::Error(deploy_path_ + ": node.socket: cannot change on reload (restart for that)");
  }
  if (!s.ok()) {
    ++reload_failures_;
    LogEvent("reload.failed", {{"reason", s.message()}});
    return s;
  }
  for (const ModelSpec& m : next.models) {
    auto it = models_.find(m.name);
    if (it == models_.end()) {
      models_[m.name] = NewModel(m);
      LogEvent("model.added", {{"model", m.name}});
      continue;
    }
    Model& model = *it->second;
    if (!model.spec.SameReplica(m)) {
      for (const auto& r : model.replicas) r->stale = true;
      LogEvent("model.replicas_replaced", {{"model", m.name}, {"reason", "replica spec changed"}});
    }
    model.removed = false;
    // A reload is the operator's answer to a refused spec (a fixed file, or a fixed host): the
    // model may start replicas again, and is refused again if nothing changed.
    model.config_error.clear();
    model.spec = m;
    model.desired = std::clamp(model.desired, m.min_replicas, m.max_replicas);
  }
  for (auto& [name, model] : models_) {
    if (next.Find(name) || model->removed) continue;
    model->removed = true;
    model->desired = 0;
    LogEvent("model.removing", {{"model", name}});
    for (const auto& ex : model->queue) {
      ex->Reject(404, "model '" + name + "' was removed from the deployment", ErrorKind::kRejected,
                 0);
    }
    model->queue.clear();
  }
  spec_ = std::move(next);
  ++reloads_;
  LogEvent("reload.ok", {{"models", std::to_string(spec_.models.size())}});
  return Status::Ok();
}

}  // namespace gpufrac::serve
