#include "serve/deploy.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/quantity.h"

namespace gpufrac::serve {
namespace {

constexpr int64_t kHourMs = 3600 * 1000;
constexpr int kMaxReplicas = 1024;
const std::set<std::string> kPlaceholders = {"port", "host", "model", "replica", "gpu"};

Status Bad(const std::string& path, const std::string& why) {
  return Status::Error(path + ": " + why);
}

// A mapping node with the keys it may hold; reads each key at "<path>.<key>".
class Map {
 public:
  Map(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {}

  Status Check(const std::set<std::string>& allowed) const {
    if (!node_.IsMap()) return Bad(path_, "expected a mapping");
    for (const auto& kv : node_) {
      const std::string key = kv.first.Scalar();
      if (!allowed.count(key)) return Bad(Child(key), "unknown key");
    }
    return Status::Ok();
  }
  YAML::Node Get(const std::string& key) const { return node_[key]; }
  bool Has(const std::string& key) const { return node_[key].IsDefined() && !node_[key].IsNull(); }
  std::string Child(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  Status String(const std::string& key, std::string* out, bool required = false) const {
    if (!Has(key)) return required ? Bad(Child(key), "required") : Status::Ok();
    const YAML::Node n = Get(key);
    if (!n.IsScalar()) return Bad(Child(key), "expected a string");
    *out = n.Scalar();
    if (out->empty()) return Bad(Child(key), "must not be empty");
    return Status::Ok();
  }

  Status Int(const std::string& key, int64_t lo, int64_t hi, int64_t* out) const {
    if (!Has(key)) return Status::Ok();
    const YAML::Node n = Get(key);
    const std::string text = n.IsScalar() ? n.Scalar() : "";
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (!n.IsScalar() || text.empty() || *end != '\0' || errno != 0) {
      return Bad(Child(key), "expected an integer");
    }
    if (v < lo || v > hi) {
      return Bad(Child(key),
                 "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    }
    *out = v;
    return Status::Ok();
  }
  Status Int(const std::string& key, int lo, int hi, int* out) const {
    int64_t v = *out;
    if (Status s = Int(key, int64_t{lo}, int64_t{hi}, &v); !s.ok()) return s;
    *out = static_cast<int>(v);
    return Status::Ok();
  }

  Status Number(const std::string& key, double lo, double hi, double* out) const {
    if (!Has(key)) return Status::Ok();
    const YAML::Node n = Get(key);
    const std::string text = n.IsScalar() ? n.Scalar() : "";
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (!n.IsScalar() || text.empty() || *end != '\0' || !std::isfinite(v)) {
      return Bad(Child(key), "expected a number");
    }
    if (v < lo || v > hi) {
      std::ostringstream why;
      why << "must be between " << lo << " and " << hi;
      return Bad(Child(key), why.str());
    }
    *out = v;
    return Status::Ok();
  }

  Status Duration(const std::string& key, int64_t lo_ms, int64_t hi_ms, int64_t* out) const {
    if (!Has(key)) return Status::Ok();
    const YAML::Node n = Get(key);
    uint64_t parsed = 0;  // durations have one syntax everywhere: common/quantity.h
    if (!n.IsScalar() || !ParseDurationMs(n.Scalar().c_str(), &parsed)) {
      return Bad(Child(key), "'" + (n.IsScalar() ? n.Scalar() : std::string("?")) +
                                 "' is not a duration (like 250ms, 10s, 2m)");
    }
    const int64_t ms = static_cast<int64_t>(parsed);  // at most 10^15
    if (ms < lo_ms || ms > hi_ms) {
      return Bad(Child(key), "must be between " + std::to_string(lo_ms) + "ms and " +
                                 std::to_string(hi_ms) + "ms");
    }
    *out = ms;
    return Status::Ok();
  }

  Status Bool(const std::string& key, bool* out) const {
    if (!Has(key)) return Status::Ok();
    const YAML::Node n = Get(key);
    const std::string text = n.IsScalar() ? n.Scalar() : "";
    if (text == "true") {
      *out = true;
    } else if (text == "false") {
      *out = false;
    } else {
      return Bad(Child(key), "expected true or false");
    }
    return Status::Ok();
  }

 private:
  YAML::Node node_;
  std::string path_;
};

Status ParseCommand(const YAML::Node& n, const std::string& path, std::vector<std::string>* out) {
  out->clear();
  if (n.IsScalar()) {
    // A string is split on whitespace; use a list for arguments with spaces.
    std::istringstream words(n.Scalar());
    for (std::string w; words >> w;) out->push_back(w);
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) return Bad(path + "[" + std::to_string(i) + "]", "expected a string");
      out->push_back(n[i].Scalar());
    }
  } else {
    return Bad(path, "expected a string or a list of strings");
  }
  if (out->empty() || (*out)[0].empty()) return Bad(path, "must name a program");
  for (size_t i = 0; i < out->size(); ++i) {
    const std::string& arg = (*out)[i];
    for (size_t open = arg.find('{'); open != std::string::npos; open = arg.find('{', open + 1)) {
      const size_t close = arg.find('}', open);
      if (close == std::string::npos) continue;
      const std::string name = arg.substr(open + 1, close - open - 1);
      if (!kPlaceholders.count(name)) {
        return Bad(path, "unknown placeholder {" + name +
                             "} (known: {port} {host} {model} {replica} {gpu})");
      }
    }
  }
  const bool has_port = std::any_of(out->begin(), out->end(), [](const std::string& a) {
    return a.find("{port}") != std::string::npos;
  });
  if (!has_port) return Bad(path, "must contain {port}, the port the replica listens on");
  return Status::Ok();
}

Status ParseMemory(const Map& m, const std::string& key, std::string* out) {
  if (!m.Has(key)) return Status::Ok();
  if (Status s = m.String(key, out); !s.ok()) return s;
  MemoryAmount amount;
  if (ParseError e = ParseMemoryAmount(out->c_str(), &amount); e != ParseError::kNone) {
    return Bad(m.Child(key), "'" + *out + "': " + ParseErrorText(e));
  }
  return Status::Ok();
}

Status ParseShare(const Map& m, GpuShare* share) {
  if (Status s = m.Check({"memory", "memory_limit", "compute", "compute_limit", "compute_mode",
                          "priority", "gpu", "placement"});
      !s.ok())
    return s;
  if (!m.Has("memory")) return Bad(m.Child("memory"), "required (a fraction like 0.25 or 20GiB)");
  if (Status s = ParseMemory(m, "memory", &share->memory); !s.ok()) return s;
  if (Status s = ParseMemory(m, "memory_limit", &share->memory_limit); !s.ok()) return s;
  if (!share->memory_limit.empty()) {
    MemoryAmount req, lim;
    ParseMemoryAmount(share->memory.c_str(), &req);
    ParseMemoryAmount(share->memory_limit.c_str(), &lim);
    const bool below = req.is_fraction == lim.is_fraction &&
                       (req.is_fraction ? lim.fraction < req.fraction : lim.bytes < req.bytes);
    if (below) return Bad(m.Child("memory_limit"), "below memory (the request)");
  }
  if (Status s = m.Number("compute", 0, 1, &share->compute); !s.ok()) return s;
  if (Status s = m.Number("compute_limit", 0, 1, &share->compute_limit); !s.ok()) return s;
  if (share->compute >= 0 && share->compute_limit >= 0 && share->compute_limit < share->compute) {
    return Bad(m.Child("compute_limit"), "below compute");
  }
  if (Status s = m.String("compute_mode", &share->compute_mode); !s.ok()) return s;
  if (!share->compute_mode.empty() && share->compute_mode != "fair" &&
      share->compute_mode != "strict") {
    return Bad(m.Child("compute_mode"), "'" + share->compute_mode + "': expected fair or strict");
  }
  // What the node agent would refuse at every replica start is refused here, once, at load.
  if (share->compute_limit == 0) return Bad(m.Child("compute_limit"), "must be above 0");
  if (share->compute_mode == "strict") {
    if (share->compute_limit >= 0) {
      return Bad(m.Child("compute_limit"), "not allowed with compute_mode strict");
    }
    if (share->compute == 0) return Bad(m.Child("compute"), "a strict share must be above 0");
  }
  std::string priority = "inference";
  if (Status s = m.String("priority", &priority); !s.ok()) return s;
  if (priority != "inference" && priority != "batch") {
    return Bad(m.Child("priority"), "'" + priority + "': expected inference or batch");
  }
  share->batch = priority == "batch";
  if (Status s = m.String("gpu", &share->gpu); !s.ok()) return s;
  if (Status s = m.String("placement", &share->placement); !s.ok()) return s;
  if (!share->placement.empty() && share->placement != "binpack" && share->placement != "spread") {
    return Bad(m.Child("placement"), "'" + share->placement + "': expected binpack or spread");
  }
  return Status::Ok();
}

bool ValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return c > ' ' && c < 127 && c != '"' && c != '\\'; });
}

Status ParseModel(const Map& m, ModelSpec* model) {
  if (Status s =
          m.Check({"name", "command", "health", "start_timeout", "drain_grace", "upstream_timeout",
                   "gpu", "min_replicas", "max_replicas", "sla", "admission", "scale_to_zero"});
      !s.ok())
    return s;
  if (Status s = m.String("name", &model->name, true); !s.ok()) return s;
  if (!ValidModelName(model->name)) {
    return Bad(m.Child("name"), "'" + model->name + "': printable characters without spaces");
  }
  if (!m.Has("command")) return Bad(m.Child("command"), "required");
  if (Status s = ParseCommand(m.Get("command"), m.Child("command"), &model->command); !s.ok())
    return s;
  if (m.Has("health")) {
    Map h(m.Get("health"), m.Child("health"));
    if (Status s = h.Check({"path", "interval", "timeout", "failures"}); !s.ok()) return s;
    if (Status s = h.String("path", &model->health.path); !s.ok()) return s;
    if (model->health.path[0] != '/') return Bad(h.Child("path"), "must start with /");
    if (Status s = h.Duration("interval", 50, 60000, &model->health.interval_ms); !s.ok()) return s;
    if (Status s = h.Duration("timeout", 10, 60000, &model->health.timeout_ms); !s.ok()) return s;
    if (Status s = h.Int("failures", 1, 100, &model->health.failures); !s.ok()) return s;
  }
  if (Status s = m.Duration("start_timeout", 100, kHourMs, &model->start_timeout_ms); !s.ok())
    return s;
  if (Status s = m.Duration("drain_grace", 0, kHourMs, &model->drain_grace_ms); !s.ok()) return s;
  if (Status s = m.Duration("upstream_timeout", 100, kHourMs, &model->upstream_timeout_ms);
      !s.ok()) {
    return s;
  }
  if (!m.Has("gpu")) return Bad(m.Child("gpu"), "required (the GPU share of one replica)");
  if (Status s = ParseShare(Map(m.Get("gpu"), m.Child("gpu")), &model->share); !s.ok()) return s;
  if (Status s = m.Int("min_replicas", 0, kMaxReplicas, &model->min_replicas); !s.ok()) return s;
  model->max_replicas = std::max(1, model->min_replicas);
  if (Status s = m.Int("max_replicas", 1, kMaxReplicas, &model->max_replicas); !s.ok()) return s;
  if (model->max_replicas < model->min_replicas) {
    return Bad(m.Child("max_replicas"), "below min_replicas");
  }
  if (!m.Has("sla")) return Bad(m.Child("sla"), "required (at least ttft_p95)");
  Map sla(m.Get("sla"), m.Child("sla"));
  if (Status s = sla.Check({"ttft_p95", "inflight_per_replica", "max_queue_wait"}); !s.ok())
    return s;
  if (!sla.Has("ttft_p95")) return Bad(sla.Child("ttft_p95"), "required");
  if (Status s = sla.Duration("ttft_p95", 1, kHourMs, &model->sla.ttft_p95_ms); !s.ok()) return s;
  if (Status s = sla.Number("inflight_per_replica", 0.1, 100000, &model->sla.inflight_per_replica);
      !s.ok())
    return s;
  if (Status s = sla.Duration("max_queue_wait", 1, kHourMs, &model->sla.max_queue_wait_ms); !s.ok())
    return s;
  if (m.Has("admission")) {
    Map a(m.Get("admission"), m.Child("admission"));
    if (Status s = a.Check({"max_inflight_per_replica", "max_queue", "queue_timeout"}); !s.ok())
      return s;
    if (Status s = a.Int("max_inflight_per_replica", 1, 100000,
                         &model->admission.max_inflight_per_replica);
        !s.ok())
      return s;
    if (Status s = a.Int("max_queue", 0, 1000000, &model->admission.max_queue); !s.ok()) return s;
    if (Status s = a.Duration("queue_timeout", 0, kHourMs, &model->admission.queue_timeout_ms);
        !s.ok())
      return s;
  }
  if (model->sla.inflight_per_replica > model->admission.max_inflight_per_replica) {
    return Bad(sla.Child("inflight_per_replica"), "above admission.max_inflight_per_replica");
  }
  if (m.Has("scale_to_zero")) {
    Map z(m.Get("scale_to_zero"), m.Child("scale_to_zero"));
    if (Status s = z.Check({"enabled", "idle", "hold"}); !s.ok()) return s;
    model->scale_to_zero.enabled = true;
    if (Status s = z.Bool("enabled", &model->scale_to_zero.enabled); !s.ok()) return s;
    if (Status s = z.Duration("idle", 1000, 24 * kHourMs, &model->scale_to_zero.idle_ms); !s.ok())
      return s;
    if (Status s = z.Duration("hold", 100, kHourMs, &model->scale_to_zero.hold_ms); !s.ok())
      return s;
  }
  if (model->min_replicas == 0 && !model->scale_to_zero.enabled) {
    return Bad(m.Child("min_replicas"), "0 needs scale_to_zero (else the model is never served)");
  }
  if (model->scale_to_zero.enabled && model->min_replicas != 0) {
    return Bad(m.Child("scale_to_zero"), "needs min_replicas: 0");
  }
  return Status::Ok();
}

Status ParseListen(const std::string& text, const std::string& path, GatewaySpec* g) {
  if (Status s = ParseListenAddress(text, &g->host, &g->port); !s.ok()) {
    return Bad(path, s.message());
  }
  return Status::Ok();
}

Status ParseGateway(const Map& m, GatewaySpec* g) {
  if (Status s = m.Check(
          {"listen", "max_body_bytes", "api_keys", "request_timeout", "client_write_timeout"});
      !s.ok())
    return s;
  std::string listen;
  if (Status s = m.String("listen", &listen); !s.ok()) return s;
  if (!listen.empty()) {
    if (Status s = ParseListen(listen, m.Child("listen"), g); !s.ok()) return s;
  }
  if (m.Has("max_body_bytes")) {
    std::string text;
    if (Status s = m.String("max_body_bytes", &text); !s.ok()) return s;
    uint64_t bytes = 0;
    if (ParseSize(text.c_str(), &bytes) != ParseError::kNone || bytes < 1024 ||
        bytes > (256ull << 20)) {
      return Bad(m.Child("max_body_bytes"), "'" + text + "': a size from 1KiB to 256MiB");
    }
    g->max_body_bytes = bytes;
  }
  if (m.Has("api_keys")) {
    const YAML::Node keys = m.Get("api_keys");
    if (!keys.IsSequence()) return Bad(m.Child("api_keys"), "expected a list of strings");
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::string path = m.Child("api_keys") + "[" + std::to_string(i) + "]";
      if (!keys[i].IsScalar() || keys[i].Scalar().empty()) return Bad(path, "expected a string");
      g->api_keys.push_back(keys[i].Scalar());
    }
  }
  if (Status s = m.Duration("request_timeout", 100, 10 * 60000, &g->request_timeout_ms); !s.ok())
    return s;
  if (Status s = m.Duration("client_write_timeout", 100, 60 * 60000, &g->client_write_timeout_ms);
      !s.ok())
    return s;
  return Status::Ok();
}

Status ParseAutoscaler(const Map& m, AutoscalerSpec* a) {
  if (Status s = m.Check({"interval", "window", "scale_out_cooldown", "scale_in_cooldown",
                          "scale_in_stable", "scale_out_at", "scale_in_below", "min_samples"});
      !s.ok())
    return s;
  if (Status s = m.Duration("interval", 50, 60000, &a->interval_ms); !s.ok()) return s;
  if (Status s = m.Duration("window", 1000, kHourMs, &a->window_ms); !s.ok()) return s;
  if (Status s = m.Duration("scale_out_cooldown", 0, kHourMs, &a->scale_out_cooldown_ms); !s.ok())
    return s;
  if (Status s = m.Duration("scale_in_cooldown", 0, kHourMs, &a->scale_in_cooldown_ms); !s.ok())
    return s;
  if (Status s = m.Duration("scale_in_stable", 0, kHourMs, &a->scale_in_stable_ms); !s.ok())
    return s;
  if (Status s = m.Number("scale_out_at", 0.1, 1, &a->scale_out_at); !s.ok()) return s;
  if (Status s = m.Number("scale_in_below", 0.01, 1, &a->scale_in_below); !s.ok()) return s;
  if (a->scale_in_below >= a->scale_out_at) {
    return Bad(m.Child("scale_in_below"), "must be below scale_out_at (hysteresis)");
  }
  if (Status s = m.Int("min_samples", 1, 100000, &a->min_samples); !s.ok()) return s;
  return Status::Ok();
}

Status ParseRoot(const YAML::Node& root, DeploySpec* out) {
  Map m(root, "");
  if (!root.IsMap()) return Status::Error("expected a mapping with a models list");
  if (Status s = m.Check({"node", "gateway", "autoscaler", "preemption", "models"}); !s.ok())
    return s;
  if (m.Has("node")) {
    Map n(m.Get("node"), "node");
    if (Status s = n.Check({"socket"}); !s.ok()) return s;
    if (Status s = n.String("socket", &out->node_socket); !s.ok()) return s;
    if (out->node_socket.size() > 107) return Bad("node.socket", "longer than 107 bytes");
  }
  if (m.Has("gateway")) {
    if (Status s = ParseGateway(Map(m.Get("gateway"), "gateway"), &out->gateway); !s.ok()) return s;
  }
  if (m.Has("autoscaler")) {
    if (Status s = ParseAutoscaler(Map(m.Get("autoscaler"), "autoscaler"), &out->autoscaler);
        !s.ok())
      return s;
  }
  if (m.Has("preemption")) {
    Map p(m.Get("preemption"), "preemption");
    if (Status s = p.Check({"enabled", "grace"}); !s.ok()) return s;
    if (Status s = p.Bool("enabled", &out->preemption.enabled); !s.ok()) return s;
    if (Status s = p.Duration("grace", 0, kHourMs, &out->preemption.grace_ms); !s.ok()) return s;
  }
  const YAML::Node models = root["models"];
  if (!models.IsDefined() || models.IsNull()) return Bad("models", "required (a list of models)");
  if (!models.IsSequence() || models.size() == 0) return Bad("models", "expected a non-empty list");
  std::set<std::string> names;
  std::map<std::string, std::string> id_parts;  // tenant-id part -> the model that has it
  for (size_t i = 0; i < models.size(); ++i) {
    const std::string path = "models[" + std::to_string(i) + "]";
    ModelSpec model;
    if (Status s = ParseModel(Map(models[i], path), &model); !s.ok()) return s;
    if (!names.insert(model.name).second) {
      return Bad(path + ".name", "'" + model.name + "' is used by an earlier model");
    }
    // Replicas' tenant ids keep only [A-Za-z0-9._-] of the name, and 40 characters of it.
    auto [it, fresh] = id_parts.emplace(TenantSafeName(model.name), model.name);
    if (!fresh) {
      return Bad(path + ".name", "'" + model.name + "' and '" + it->second +
                                     "' give the same replica ids ('" + it->first +
                                     "'); rename one");
    }
    out->models.push_back(std::move(model));
  }
  return Status::Ok();
}

}  // namespace

bool ModelSpec::SameReplica(const ModelSpec& o) const {
  const GpuShare& a = share;
  const GpuShare& b = o.share;
  return command == o.command && health.path == o.health.path && a.memory == b.memory &&
         a.memory_limit == b.memory_limit && a.compute == b.compute &&
         a.compute_limit == b.compute_limit && a.compute_mode == b.compute_mode &&
         a.batch == b.batch && a.gpu == b.gpu && a.placement == b.placement;
}

const ModelSpec* DeploySpec::Find(const std::string& name) const {
  for (const ModelSpec& m : models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

Status ParseListenAddress(const std::string& text, std::string* host, uint16_t* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::Error("'" + text + "': expected IP:PORT");
  }
  std::string ip = text.substr(0, colon);
  // "[::1]:8080", the usual way to write an IPv6 address with a port.
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  const std::string digits = text.substr(colon + 1);
  // Digits only: strtol also took leading blanks and a sign ("127.0.0.1: 80", ":+80").
  uint16_t v = 0;
  const char* first = digits.data();
  const char* last = first + digits.size();
  const bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
  if (!all_digits || std::from_chars(first, last, v).ec != std::errc()) {
    return Status::Error("'" + text + "': bad port");
  }
  // The gateway binds this address as it is, without resolving names: a host name that passed
  // here would only be refused later, at start, after --check had called the file good.
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(ip, ec);
  if (ec) {
    return Status::Error("'" + text + "': '" + ip +
                         "' is not an IP address (names are not resolved; use 127.0.0.1, 0.0.0.0 "
                         "or ::1)");
  }
  *host = ip;
  *port = v;
  return Status::Ok();
}

Status ParseDeploy(const std::string& yaml_text, const std::string& origin, DeploySpec* out) {
  DeploySpec spec;
  Status s;
  try {
    s = ParseRoot(YAML::Load(yaml_text), &spec);
  } catch (const YAML::Exception& e) {
    s = Status::Error("not valid YAML: line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!s.ok()) return Status::Error(origin + ": " + s.message());
  *out = std::move(spec);
  return Status::Ok();
}

std::string TenantSafeName(const std::string& model_name) {
  constexpr size_t kMax = 40;
  std::string out;
  for (char c : model_name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    out += ok ? c : '-';
    if (out.size() == kMax) break;
  }
  return out;
}

void DeployOverrides::ApplyTo(DeploySpec* spec) const {
  if (port >= 0) {
    spec->gateway.host = host;
    spec->gateway.port = static_cast<uint16_t>(port);
  }
  if (!node_socket.empty()) spec->node_socket = node_socket;
}

Status LoadDeployFile(const std::string& path, DeploySpec* out) {
  std::ifstream in(path);
  if (!in) return Status::Error(path + ": cannot read the file");
  std::stringstream text;
  text << in.rdbuf();
  return ParseDeploy(text.str(), path, out);
}

std::vector<std::string> ExpandCommand(const std::vector<std::string>& tmpl, const ReplicaVars& v) {
  const std::pair<std::string, std::string> subs[] = {{"{port}", std::to_string(v.port)},
                                                      {"{host}", v.host},
                                                      {"{model}", v.model},
                                                      {"{replica}", v.replica},
                                                      // CUDA_VISIBLE_DEVICES names only the
                                                      // placed GPU, so the replica sees it as 0.
                                                      {"{gpu}", "0"}};
  std::vector<std::string> out;
  for (std::string arg : tmpl) {
    for (const auto& [key, value] : subs) {
      for (size_t pos = arg.find(key); pos != std::string::npos;
           pos = arg.find(key, pos + value.size())) {
        arg.replace(pos, key.size(), value);
      }
    }
    out.push_back(std::move(arg));
  }
  return out;
}

}  // namespace gpufrac::serve
