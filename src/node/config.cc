#include "node/config.h"

#include <arpa/inet.h>
#include <grp.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "common/quantity.h"

namespace gpufrac::node {
namespace {

// A key's setter: reads the node into the config or returns why it cannot.
using Setter = std::function<Status(const YAML::Node&, const std::string& path, NodeConfig*)>;

Status Bad(const std::string& path, const std::string& why) {
  return Status::Error(path + ": " + why);
}

Status ReadScalar(const YAML::Node& n, const std::string& path, std::string* out) {
  if (!n.IsScalar()) return Bad(path, "expected a scalar value");
  *out = n.Scalar();
  return Status::Ok();
}

Status ReadUint(const YAML::Node& n, const std::string& path, uint64_t lo, uint64_t hi,
                uint64_t* out) {
  std::string text;
  if (Status s = ReadScalar(n, path, &text); !s.ok()) return s;
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
      text.size() > 19) {
    return Bad(path, "'" + text + "' is not a non-negative integer");
  }
  const uint64_t v = std::stoull(text);
  if (v < lo || v > hi) {
    return Bad(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  *out = v;
  return Status::Ok();
}

// Durations as "250ms", "10s", "2m", "1h" or a bare number of milliseconds (common/quantity.h).
Status ReadDurationMs(const YAML::Node& n, const std::string& path, uint64_t lo_ms, uint64_t hi_ms,
                      uint32_t* out) {
  std::string text;
  if (Status s = ReadScalar(n, path, &text); !s.ok()) return s;
  uint64_t ms = 0;
  if (!ParseDurationMs(text.c_str(), &ms)) {
    return Bad(path, "'" + text + "' is not a duration (like 250ms, 10s, 2m, 1h)");
  }
  if (ms < lo_ms || ms > hi_ms) {
    return Bad(path, "must be between " + std::to_string(lo_ms) + "ms and " +
                         std::to_string(hi_ms) + "ms");
  }
  *out = static_cast<uint32_t>(ms);
  return Status::Ok();
}

Status ReadPath(const YAML::Node& n, const std::string& path, std::string* out) {
  std::string text;
  if (Status s = ReadScalar(n, path, &text); !s.ok()) return s;
  if (text.empty()) return Bad(path, "must not be empty");
  *out = text;
  return Status::Ok();
}

const std::map<std::string, Setter>& Keys() {
  static const auto* keys = new std::map<std::string, Setter>{
      {"socket",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         if (Status s = ReadPath(n, p, &c->socket_path); !s.ok()) return s;
         if (c->socket_path.size() > kMaxSocketPathBytes) {
           return Bad(p, "longer than " + std::to_string(kMaxSocketPathBytes) + " bytes");
         }
         return Status::Ok();
       }},
      {"socket_mode",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         std::string text;
         if (Status s = ReadScalar(n, p, &text); !s.ok()) return s;
         if (text.empty() || text.size() > 4 ||
             text.find_first_not_of("01234567") != std::string::npos) {
           return Bad(p, "'" + text + "' is not an octal mode like 0660");
         }
         c->socket_mode = static_cast<uint32_t>(std::stoul(text, nullptr, 8));
         if ((c->socket_mode & 0600) != 0600) return Bad(p, "the owner must keep read and write");
         return Status::Ok();
       }},
      {"socket_group",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         if (Status s = ReadPath(n, p, &c->socket_group); !s.ok()) return s;
         if (getgrnam(c->socket_group.c_str()) == nullptr) {
           return Bad(p, "no group '" + c->socket_group + "' on this host");
         }
         return Status::Ok();
       }},
      {"state", [](const YAML::Node& n, const std::string& p,
                   NodeConfig* c) { return ReadPath(n, p, &c->state_path); }},
      {"interposer", [](const YAML::Node& n, const std::string& p,
                        NodeConfig* c) { return ReadPath(n, p, &c->interposer_path); }},
      {"placement",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         std::string text;
         if (Status s = ReadScalar(n, p, &text); !s.ok()) return s;
         if (!ParsePlacement(text, &c->default_placement)) {
           return Bad(p, "'" + text + "' is not binpack or spread");
         }
         return Status::Ok();
       }},
      {"grace_period",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         return ReadDurationMs(n, p, 0, 3600000, &c->grace_period_ms);
       }},
      {"burst_reclaim_deadline",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         return ReadDurationMs(n, p, 0, kMaxBurstReclaimDeadlineMs, &c->burst_reclaim_deadline_ms);
       }},
      {"reap_interval",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         return ReadDurationMs(n, p, 10, 1000, &c->reap_interval_ms);
       }},
      {"api.max_body_bytes",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         return ReadUint(n, p, 1024, 64ull << 20, &c->max_body_bytes);
       }},
      {"api.request_timeout",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         return ReadDurationMs(n, p, 100, 600000, &c->request_timeout_ms);
       }},
      {"tcp.address",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         std::string text;
         if (Status s = ReadScalar(n, p, &text); !s.ok()) return s;
         const size_t colon = text.rfind(':');
         const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
         if (colon == 0 || port.empty() || port.size() > 5 ||
             port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) == 0 ||
             std::stoul(port) > 65535) {
           return Bad(p, "'" + text + "' is not IP:PORT with a port in 1-65535");
         }
         // An address literal, as the listener will need it: a host name ("localhost") would
         // pass here and fail only at bind time.
         const std::string ip = text.substr(0, colon);
         in6_addr parsed;
         if (inet_pton(AF_INET, ip.c_str(), &parsed) != 1 &&
             inet_pton(AF_INET6, ip.c_str(), &parsed) != 1) {
           return Bad(p, "'" + ip + "' is not an IPv4 or IPv6 address (a name is not resolved)");
         }
         c->tcp_address = text;
         return Status::Ok();
       }},
      {"tcp.token_file", [](const YAML::Node& n, const std::string& p,
                            NodeConfig* c) { return ReadPath(n, p, &c->tcp_token_file); }},
      {"backstop.mode",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         std::string text;
         if (Status s = ReadScalar(n, p, &text); !s.ok()) return s;
         if (text == "off") {
           c->backstop_mode = BackstopMode::kOff;
         } else if (text == "warn") {
           c->backstop_mode = BackstopMode::kWarn;
         } else if (text == "kill") {
           c->backstop_mode = BackstopMode::kKill;
         } else {
           return Bad(p, "'" + text + "' is not off, warn or kill");
         }
         return Status::Ok();
       }},
      {"backstop.interval",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         return ReadDurationMs(n, p, 50, 60000, &c->backstop_interval_ms);
       }},
      {"backstop.tolerance",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         std::string text;
         if (Status s = ReadScalar(n, p, &text); !s.ok()) return s;
         uint64_t bytes = 0;
         if (text == "0") {
           bytes = 0;
         } else if (ParseError e = ParseSize(text.c_str(), &bytes); e != ParseError::kNone) {
           return Bad(p, "'" + text + "': " + ParseErrorText(e));
         }
         if (bytes > (16ull << 30)) return Bad(p, "must be at most 16GiB");
         c->backstop_tolerance_bytes = bytes;
         return Status::Ok();
       }},
      {"api.threads",
       [](const YAML::Node& n, const std::string& p, NodeConfig* c) {
         uint64_t v = 0;
         if (Status s = ReadUint(n, p, 1, 64, &v); !s.ok()) return s;
         c->api_threads = static_cast<uint32_t>(v);
         return Status::Ok();
       }},
  };
  return *keys;
}

// Walks a mapping; nested mappings are only allowed where a known key has that prefix.
Status Walk(const YAML::Node& map, const std::string& prefix, NodeConfig* config) {
  if (!map.IsMap()) return Bad(prefix.empty() ? "(top level)" : prefix, "expected a mapping");
  for (const auto& kv : map) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    auto it = Keys().find(path);
    if (it != Keys().end()) {
      if (Status s = it->second(kv.second, path, config); !s.ok()) return s;
      continue;
    }
    bool is_section = false;
    for (const auto& [name, setter] : Keys()) {
      if (name.rfind(path + ".", 0) == 0) is_section = true;
    }
    if (!is_section) return Bad(path, "unknown key");
    if (Status s = Walk(kv.second, path, config); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

const char* BackstopModeName(BackstopMode m) {
  switch (m) {
    case BackstopMode::kOff:
      return "off";
    case BackstopMode::kWarn:
      return "warn";
    case BackstopMode::kKill:
      return "kill";
  }
  return "?";
}

const char* PlacementName(Placement p) { return p == Placement::kSpread ? "spread" : "binpack"; }

bool ParsePlacement(const std::string& text, Placement* p) {
  if (text == "binpack") {
    *p = Placement::kBinPack;
  } else if (text == "spread") {
    *p = Placement::kSpread;
  } else {
    return false;
  }
  return true;
}

Status ParseConfig(const std::string& yaml, const std::string& origin, NodeConfig* config) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Status::Error(origin + ": not valid YAML: line " + std::to_string(e.mark.line + 1) +
                         ": " + e.msg);
  }
  if (root.IsNull()) return Status::Ok();  // an empty file keeps every default
  if (Status s = Walk(root, "", config); !s.ok()) {
    return Status::Error(origin + ": " + s.message());
  }
  if (!config->tcp_address.empty() && config->tcp_token_file.empty()) {
    return Status::Error(origin + ": tcp.token_file: required when tcp.address is set");
  }
  if (config->tcp_address.empty() && !config->tcp_token_file.empty()) {
    // Likely a forgotten address: the operator expects a TCP listener that would not exist.
    return Status::Error(origin + ": tcp.address: required when tcp.token_file is set");
  }
  return Status::Ok();
}

Status LoadConfig(const std::string& path, NodeConfig* config) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read config file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path, config);
}

}  // namespace gpufrac::node
