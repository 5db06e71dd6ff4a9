#include "serve/node_client.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "node/config.h"
#include "node/http_server.h"

namespace gpufrac::serve {
namespace {

using nlohmann::json;

// Agent calls are short except DELETE, which blocks for up to its grace + 5 s (docs/api.md),
// and a create that waits for a memory-burst reclaim.
constexpr uint32_t kCallTimeoutMs = 15000;

std::string ErrorText(int status, const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("message") && j["error"]["message"].is_string()) {
    return j["error"]["message"].get<std::string>();
  }
  return "HTTP " + std::to_string(status);
}

TenantInfo FromJson(const json& t) {
  TenantInfo info;
  info.id = t.value("id", "");
  info.state = t.value("state", "");
  info.gpu = t.value("gpu", -1);
  info.created_ms = t.value("created_ms", int64_t{0});
  info.pid = t.contains("pid") && t["pid"].is_number() ? t["pid"].get<int>() : 0;
  info.reason = t.value("reason", "");
  if (t.contains("memory") && t["memory"].is_object()) {
    info.committed =
        std::max(t["memory"].value("used", uint64_t{0}), t["memory"].value("request", uint64_t{0}));
  }
  if (t.contains("compute") && t["compute"].is_object()) {
    info.batch = t["compute"].value("priority", "") == "batch";
  }
  return info;
}

}  // namespace

Status NodeClient::CreateTenant(const std::string& name, const std::vector<std::string>& command,
                                const GpuShare& share, TenantInfo* created, bool* conflict,
                                bool* unanswered, bool* invalid) const {
  json spec = {{"name", name}, {"command", command}, {"memory", share.memory}};
  if (!share.memory_limit.empty()) spec["memory_limit"] = share.memory_limit;
  if (share.compute >= 0) spec["compute"] = share.compute;
  if (share.compute_limit >= 0) spec["compute_limit"] = share.compute_limit;
  if (!share.compute_mode.empty()) spec["compute_mode"] = share.compute_mode;
  spec["priority"] = share.batch ? "batch" : "inference";
  if (!share.gpu.empty()) {
    const bool index = share.gpu.find_first_not_of("0123456789") == std::string::npos;
    spec["gpu"] = index ? json(std::stoi(share.gpu)) : json(share.gpu);
  }
  if (!share.placement.empty()) spec["placement"] = share.placement;
  int status = 0;
  std::string body;
  *conflict = false;
  Status s = node::HttpCall(socket_, "POST", "/v1/tenants", spec.dump(), &status, &body,
                            node::kCreateTenantTimeoutMs);
  if (!s.ok()) {
    if (unanswered != nullptr) *unanswered = true;
    return Status::Error("node agent at " + socket_ + ": " + s.message());
  }
  if (status != 201) {
    *conflict = status == 409;
    if (invalid != nullptr) *invalid = status == 400;
    return Status::Error("node agent refused tenant " + name + ": " + ErrorText(status, body));
  }
  *created = FromJson(json::parse(body, nullptr, false));
  return Status::Ok();
}

Status NodeClient::DeleteTenant(const std::string& name, int64_t grace_ms, bool* existed) const {
  int status = 0;
  std::string body;
  const std::string target = "/v1/tenants/" + name + "?grace=" + std::to_string(grace_ms) + "ms";
  Status s = node::HttpCall(socket_, "DELETE", target, "", &status, &body,
                            static_cast<uint32_t>(grace_ms) + kCallTimeoutMs);
  if (!s.ok()) return Status::Error("node agent at " + socket_ + ": " + s.message());
  if (status != 200 && status != 404) {
    return Status::Error("deleting tenant " + name + ": " + ErrorText(status, body));
  }
  if (existed != nullptr) *existed = status == 200;
  return Status::Ok();
}

Status NodeClient::ListTenants(std::vector<TenantInfo>* tenants) const {
  int status = 0;
  std::string body;
  Status s = node::HttpCall(socket_, "GET", "/v1/tenants", "", &status, &body, kCallTimeoutMs);
  if (!s.ok()) return Status::Error("node agent at " + socket_ + ": " + s.message());
  json j = json::parse(body, nullptr, false);
  if (status != 200 || !j.is_object() || !j.contains("tenants") || !j["tenants"].is_array()) {
    return Status::Error("listing tenants: " + ErrorText(status, body));
  }
  tenants->clear();
  for (const json& t : j["tenants"]) tenants->push_back(FromJson(t));
  return Status::Ok();
}

Status NodeClient::ListGpus(std::vector<GpuRoom>* gpus) const {
  int status = 0;
  std::string body;
  Status s = node::HttpCall(socket_, "GET", "/v1/gpus", "", &status, &body, kCallTimeoutMs);
  if (!s.ok()) return Status::Error("node agent at " + socket_ + ": " + s.message());
  json j = json::parse(body, nullptr, false);
  if (status != 200 || !j.is_object() || !j.contains("gpus") || !j["gpus"].is_array()) {
    return Status::Error("listing GPUs: " + ErrorText(status, body));
  }
  gpus->clear();
  for (const json& g : j["gpus"]) {
    GpuRoom room;
    room.index = g.value("index", -1);
    room.uuid = g.value("uuid", "");
    if (g.contains("memory") && g["memory"].is_object()) {
      room.total = g["memory"].value("total", uint64_t{0});
      room.free = g["memory"].value("free", uint64_t{0});
    }
    gpus->push_back(room);
  }
  return Status::Ok();
}

Status NodeClient::Health() const {
  int status = 0;
  std::string body;
  Status s = node::HttpCall(socket_, "GET", "/v1/health", "", &status, &body, 5000);
  if (!s.ok()) return Status::Error("node agent at " + socket_ + ": " + s.message());
  if (status != 200)
    return Status::Error("node agent at " + socket_ + ": HTTP " + std::to_string(status));
  return Status::Ok();
}

}  // namespace gpufrac::serve
