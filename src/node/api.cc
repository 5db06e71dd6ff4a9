#include "node/api.h"

#include <signal.h>

#include <chrono>
#include <climits>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "node/metrics.h"

namespace gpufrac::node {
namespace {

using nlohmann::json;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HttpResponse Json(int status, const json& body) {
  return HttpResponse{status, "application/json", body.dump() + "\n"};
}

HttpResponse FromError(const AgentError& e) { return JsonError(e.code, e.message); }

json TenantJson(const TenantView& v) {
  const TenantRecord& r = v.record;
  const int64_t end = r.state == TenantState::kExited ? r.finished_ms : NowMs();
  json j = {
      {"id", r.id},
      {"gpu", r.gpu_index},
      {"gpu_uuid", r.gpu_uuid},
      {"state", StateName(r.state)},
      {"memory",
       {{"request", r.memory_request},
        {"limit", r.memory_limit},
        {"used", v.usage.used},
        {"peak", v.usage.peak},
        {"refusals", v.usage.refusals}}},
      {"processes", v.usage.processes},
      {"pid", r.pid},
      {"command", r.command},
      {"created_ms", r.created_ms},
      {"age_seconds", static_cast<double>(end - r.created_ms) / 1000.0},
      {"adopted", r.adopted},
      {"exit_status", nullptr},
      {"reason", r.reason},
      {"burst_signal", r.burst_signal},
      {"burst_hook", r.burst_hook},
      {"compute",
       {{"request", r.compute_request},
        {"limit", r.compute_limit},
        {"mode", r.compute_strict ? "strict" : "fair"},
        {"gpu_time_ns", v.usage.gpu_time_ns},
        {"throttled_ns", v.usage.throttled_ns},
        {"share", v.usage.share_permille / 1000.0},
        {"priority", r.batch ? "batch" : "inference"}}},
      {"attach_only", r.attach_only},
      {"release", r.release_on_exit ? "on_exit" : "on_delete"},
      {"restart", r.restart_on_failure ? "on-failure" : "never"},
      {"max_restarts", r.max_restarts},
      {"restarts", r.restarts},
  };
  json attached = json::array();
  for (const auto& [pid, start] : r.attached) attached.push_back(pid);
  j["attached"] = attached;
  j["memory"]["nvml_used"] = nullptr;
  if (v.usage.nvml_used >= 0) j["memory"]["nvml_used"] = v.usage.nvml_used;
  if (r.state == TenantState::kExited && r.exit_known) j["exit_status"] = r.exit_status;
  if (r.state == TenantState::kExited) j["finished_ms"] = r.finished_ms;
  return j;
}

// "grace=5s" from a query string; -1 when absent.
Status ParseGrace(const std::string& query, int64_t* grace_ms) {
  *grace_ms = -1;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    const size_t amp = query.find('&', pos);
    const std::string pair = query.substr(pos, amp == std::string::npos ? amp : amp - pos);
    const size_t eq = pair.find('=');
    const std::string key = pair.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : pair.substr(eq + 1);
    if (key == "grace") {
      uint64_t ms = 0;
      if (!ParseDurationMs(value.c_str(), &ms) || ms > 3600000) {
        return Status::Error("grace: '" + value + "' is not a duration up to 1h (like 5s, 1h)");
      }
      *grace_ms = static_cast<int64_t>(ms);
    } else if (!key.empty()) {
      return Status::Error("unknown query parameter '" + key + "'");
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return Status::Ok();
}

Status ReadAmount(const json& j, const char* field, MemoryAmount* out) {
  if (!j.is_string()) {
    return Status::Error(std::string(field) + ": expected a string like \"0.5\" or \"20GiB\"");
  }
  const std::string text = j.get<std::string>();
  if (ParseError e = ParseMemoryAmount(text.c_str(), out); e != ParseError::kNone) {
    return Status::Error(std::string(field) + ": '" + text + "': " + ParseErrorText(e));
  }
  return Status::Ok();
}

// The signals a tenant may ask to be notified with; the rest would stop or kill it.
bool ParseSignal(std::string name, int* sig) {
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  static const std::pair<const char*, int> kSignals[] = {
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP}, {"INT", SIGINT}, {"TERM", SIGTERM}};
  for (const auto& [n, s] : kSignals) {
    if (name == n) {
      *sig = s;
      return true;
    }
  }
  return false;
}

struct Route {
  std::string method;
  std::string prefix;  // a path, or a prefix ending in '/' followed by one {id} segment
  bool has_id;
  std::function<HttpResponse(Agent*, const HttpRequest&, const std::string& id)> run;
};

const std::vector<Route>& Routes() {
  static const auto* routes = new std::vector<Route>{
      {"GET", "/v1/health", false,
       [](Agent*, const HttpRequest&, const std::string&) {
         return Json(200, {{"status", "ok"}});
       }},
      {"GET", "/v1/gpus", false,
       [](Agent* a, const HttpRequest&, const std::string&) {
         json gpus = json::array();
         for (const GpuView& g : a->Gpus()) {
           gpus.push_back(
               {{"index", g.info.index},
                {"uuid", g.info.uuid},
                {"name", g.info.name},
                {"memory",
                 {{"total", g.info.total_bytes},
                  {"committed", g.committed},
                  {"used", g.used},
                  {"free",
                   g.committed < g.info.total_bytes ? g.info.total_bytes - g.committed : 0}}},
                {"tenants", g.tenants},
                {"health", g.problem.empty() ? "ok" : "unhealthy: " + g.problem},
                {"sm_count", g.sm_count > 0 ? json(g.sm_count) : json(nullptr)},
                {"compute",
                 {{"busy", g.compute_busy >= 0 ? json(g.compute_busy) : json(nullptr)}}}});
         }
         return Json(200, {{"gpus", gpus}});
       }},
      {"GET", "/v1/tenants", false,
       [](Agent* a, const HttpRequest&, const std::string&) {
         json list = json::array();
         for (const TenantView& v : a->List()) list.push_back(TenantJson(v));
         return Json(200, {{"tenants", list}});
       }},
      {"POST", "/v1/tenants", false,
       [](Agent* a, const HttpRequest& req, const std::string&) {
         CreateTenantRequest create;
         if (Status s = ParseCreateTenant(req.body, &create); !s.ok()) {
           return JsonError(400, s.message());
         }
         TenantView v;
         if (AgentError e = a->Create(create, &v); !e.ok()) return FromError(e);
         json j = TenantJson(v);
         // The token is shown once, to whoever created the tenant; listings never carry it.
         if (v.record.attach_only) {
           j["token"] = v.record.token;
           json env = json::object();
           for (const auto& [k, val] : a->TenantEnv(v.record)) env[k] = val;
           j["env"] = env;
         }
         return Json(201, j);
       }},
      {"GET", "/v1/tenants/", true,
       [](Agent* a, const HttpRequest&, const std::string& id) {
         TenantView v;
         if (AgentError e = a->Get(id, &v); !e.ok()) return FromError(e);
         return Json(200, TenantJson(v));
       }},
      {"DELETE", "/v1/tenants/", true,
       [](Agent* a, const HttpRequest& req, const std::string& id) {
         int64_t grace_ms = -1;
         if (Status s = ParseGrace(req.query, &grace_ms); !s.ok()) {
           return JsonError(400, s.message());
         }
         TenantView v;
         if (AgentError e = a->Delete(id, grace_ms, &v); !e.ok()) return FromError(e);
         return Json(200, TenantJson(v));
       }},
      {"POST", "/v1/attach", false,
       [](Agent* a, const HttpRequest& req, const std::string&) {
         const json j = json::parse(req.body, nullptr, false);
         if (j.is_discarded() || !j.is_object()) {
           return JsonError(400, "expected a JSON object {\"token\": ..., \"pid\": ...}");
         }
         for (const auto& [key, value] : j.items()) {
           if (key != "token" && key != "pid") return JsonError(400, "unknown field '" + key + "'");
         }
         if (!j.contains("token") || !j["token"].is_string()) {
           return JsonError(400, "token: required (a string)");
         }
         if (!j.contains("pid") || !j["pid"].is_number_unsigned() ||
             j["pid"].get<uint64_t>() > INT32_MAX) {
           return JsonError(400, "pid: required (a process id)");
         }
         AttachView v;
         if (AgentError e = a->Attach(j["token"], j["pid"].get<pid_t>(), &v); !e.ok()) {
           return FromError(e);
         }
         json env = json::object();
         for (const auto& [k, val] : v.env) env[k] = val;
         TenantView view{v.record, {}};
         json out = TenantJson(view);
         out["env"] = env;
         return Json(200, out);
       }},
      {"GET", "/v1/backstop", false,
       [](Agent* a, const HttpRequest&, const std::string&) {
         const BackstopView b = a->Backstop();
         json offenders = json::array();
         for (const BackstopOffender& o : b.offenders) {
           offenders.push_back(
               {{"gpu", o.gpu},
                {"pid", o.finding.pid},
                {"tenant", o.finding.tenant.empty() ? json(nullptr) : json(o.finding.tenant)},
                {"reason", BackstopReasonName(o.finding.reason)},
                {"used", o.finding.used},
                {"tenant_used", o.finding.tenant_used},
                {"allowance", o.finding.allowance},
                {"action", o.killed ? "killed" : "flagged"},
                {"since_ms", o.since_ms},
                {"detail", DescribeFinding(o.finding, o.gpu)}});
         }
         return Json(200, {{"mode", BackstopModeName(b.mode)},
                           {"interval_ms", b.interval_ms},
                           {"samples", b.samples},
                           {"last_sample_ms", b.last_sample_ms},
                           {"error", b.error.empty() ? json(nullptr) : json(b.error)},
                           {"offenders", offenders}});
       }},
      {"GET", "/metrics", false,
       [](Agent* a, const HttpRequest&, const std::string&) {
         return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(a)};
       }},
  };
  return *routes;
}

}  // namespace

Status ParseCreateTenant(const std::string& body, CreateTenantRequest* out) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return Status::Error("malformed JSON body");
  if (!j.is_object()) return Status::Error("the body must be a JSON object");
  static const std::set<std::string> kFields = {
      "name",         "memory",     "memory_limit", "gpu",           "command",      "placement",
      "burst_signal", "burst_hook", "compute",      "compute_limit", "compute_mode", "priority",
      "release",      "attach_pid", "restart",      "max_restarts"};
  for (const auto& [key, value] : j.items()) {
    if (kFields.count(key) == 0) return Status::Error("unknown field '" + key + "'");
  }
  if (!j.contains("memory")) return Status::Error("memory: required (a fraction or a size)");
  if (Status s = ReadAmount(j["memory"], "memory", &out->memory); !s.ok()) return s;
  if (j.contains("memory_limit")) {
    if (Status s = ReadAmount(j["memory_limit"], "memory_limit", &out->memory_limit); !s.ok()) {
      return s;
    }
    out->has_memory_limit = true;
  }
  if (j.contains("name")) {
    if (!j["name"].is_string()) return Status::Error("name: expected a string");
    out->name = j["name"].get<std::string>();
  }
  if (j.contains("gpu")) {
    const json& g = j["gpu"];
    if (g.is_number_unsigned()) {
      out->gpu = std::to_string(g.get<uint64_t>());
    } else if (g.is_string() && !g.get<std::string>().empty()) {
      out->gpu = g.get<std::string>();
    } else {
      return Status::Error("gpu: expected a GPU index (0, 1, ...) or a UUID");
    }
  }
  if (j.contains("placement")) {
    if (!j["placement"].is_string() ||
        !ParsePlacement(j["placement"].get<std::string>(), &out->placement)) {
      return Status::Error("placement: expected \"binpack\" or \"spread\"");
    }
    out->has_placement = true;
  }
  if (j.contains("burst_signal")) {
    if (!j["burst_signal"].is_string() ||
        !ParseSignal(j["burst_signal"].get<std::string>(), &out->burst_signal)) {
      return Status::Error("burst_signal: expected a signal name like \"SIGUSR1\"");
    }
  }
  if (j.contains("burst_hook")) {
    const json& h = j["burst_hook"];
    if (!h.is_string() || !ValidHookUrl(h.get<std::string>())) {
      return Status::Error("burst_hook: expected a URL like \"http://127.0.0.1:8080/reclaim\"");
    }
    out->burst_hook = h.get<std::string>();
  }
  for (const char* field : {"compute", "compute_limit"}) {
    if (!j.contains(field)) continue;
    const json& v = j[field];
    if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() <= 1)) {
      return Status::Error(std::string(field) + ": expected a share of the GPU in [0, 1]");
    }
    (std::string(field) == "compute" ? out->compute_request : out->compute_limit) = v.get<double>();
  }
  if (j.contains("compute_mode")) {
    const json& v = j["compute_mode"];
    if (!v.is_string() || (v != "fair" && v != "strict")) {
      return Status::Error("compute_mode: expected \"fair\" or \"strict\"");
    }
    out->compute_strict = v == "strict";
    if (out->compute_strict && j.contains("compute_limit")) {
      return Status::Error("compute_limit: not allowed with compute_mode strict (limit = request)");
    }
    // Strict caps the tenant at its request: a request of 0 would be a tenant that never runs
    // (gpufrac run refuses it the same way).
    if (out->compute_strict && j.contains("compute") && out->compute_request == 0) {
      return Status::Error("compute: a strict tenant needs a share above 0");
    }
  }
  if (j.contains("compute_limit") && out->compute_limit == 0) {
    return Status::Error("compute_limit: must be above 0 (a tenant capped at 0 never runs)");
  }
  if (j.contains("priority")) {
    const json& v = j["priority"];
    if (!v.is_string() || (v != "inference" && v != "batch")) {
      return Status::Error("priority: expected \"inference\" or \"batch\"");
    }
    out->batch = v == "batch";
  }
  if (j.contains("release")) {
    const json& v = j["release"];
    if (!v.is_string() || (v != "on_delete" && v != "on_exit")) {
      return Status::Error("release: expected \"on_delete\" or \"on_exit\"");
    }
    out->release_on_exit = v == "on_exit";
  }
  if (j.contains("attach_pid")) {
    const json& v = j["attach_pid"];
    if (!v.is_number_unsigned() || v.get<uint64_t>() == 0 || v.get<uint64_t>() > INT32_MAX) {
      return Status::Error("attach_pid: expected a process id");
    }
    out->attach_pid = v.get<pid_t>();
  }
  if (j.contains("restart")) {
    const json& v = j["restart"];
    if (!v.is_string() || (v != "never" && v != "on-failure")) {
      return Status::Error("restart: expected \"never\" or \"on-failure\"");
    }
    out->restart_on_failure = v == "on-failure";
    out->max_restarts = out->restart_on_failure ? 3 : 0;
  }
  if (j.contains("max_restarts")) {
    const json& v = j["max_restarts"];
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 1000) {
      return Status::Error("max_restarts: expected an integer in [0, 1000]");
    }
    if (!out->restart_on_failure) {
      return Status::Error("max_restarts: only with restart \"on-failure\"");
    }
    out->max_restarts = v.get<uint32_t>();
  }
  // No command: an attach-only tenant, joined by processes that present its token.
  if (!j.contains("command")) {
    if (out->restart_on_failure) {
      return Status::Error("restart: needs a command (attach-only tenants have none)");
    }
    return Status::Ok();
  }
  if (out->release_on_exit || out->attach_pid != 0) {
    return Status::Error("release, attach_pid: only for attach-only tenants (no command)");
  }
  const json& c = j["command"];
  if (!c.is_array() || c.empty()) {
    return Status::Error("command: expected a non-empty array of strings");
  }
  for (const json& arg : c) {
    if (!arg.is_string()) return Status::Error("command: every element must be a string");
    out->command.push_back(arg.get<std::string>());
  }
  if (out->command[0].empty()) return Status::Error("command: the program must not be empty");
  return Status::Ok();
}

HttpHandler MakeApiHandler(Agent* agent) {
  return [agent](const HttpRequest& req) {
    bool path_known = false;
    for (const Route& r : Routes()) {
      std::string id;
      if (r.has_id) {
        if (req.path.rfind(r.prefix, 0) != 0) continue;
        id = req.path.substr(r.prefix.size());
        if (id.empty() || id.find('/') != std::string::npos) continue;
      } else if (req.path != r.prefix) {
        continue;
      }
      path_known = true;
      if (req.method == r.method) return r.run(agent, req, id);
    }
    if (path_known) return JsonError(405, "method " + req.method + " not allowed on " + req.path);
    return JsonError(404, "no such endpoint: " + req.path);
  };
}

}  // namespace gpufrac::node
