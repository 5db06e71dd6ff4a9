#include "bench/workload_file.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <set>

namespace gpufrac::bench {
namespace {

nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& item : node) out[item.first.as<std::string>()] = YamlToJson(item.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (node.Tag() == "!") return text;  // quoted: a string
      bool b;
      if (YAML::convert<bool>::decode(node, b)) return b;
      int64_t i;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (ec == std::errc() && p == text.data() + text.size()) return i;
      double d;
      auto [q, ec2] = std::from_chars(text.data(), text.data() + text.size(), d);
      if (ec2 == std::errc() && q == text.data() + text.size()) return d;
      return text;
    }
    default:
      return nullptr;
  }
}

// Reads the fields of one workload (or the file's defaults) with clear errors.
class Fields {
 public:
  Fields(const YAML::Node& node, std::string where) : node_(node), where_(std::move(where)) {}

  Status CheckKnown(const std::set<std::string>& known) const {
    for (const auto& item : node_) {
      std::string key = item.first.as<std::string>();
      if (!known.count(key)) return Status::Error(where_ + "unknown key '" + key + "'");
    }
    return Status::Ok();
  }
  bool Has(const char* key) const { return node_[key].IsDefined() && !node_[key].IsNull(); }

  template <typename T>
  Status Get(const char* key, T* value) const {
    if (!Has(key)) return Status::Ok();
    try {
      *value = node_[key].as<T>();
    } catch (const YAML::Exception&) {
      return Status::Error(where_ + "'" + key + "' has the wrong type");
    }
    return Status::Ok();
  }
  Status GetDuration(const char* key, double* seconds) const {
    if (!Has(key)) return Status::Ok();
    std::string text;
    if (Status s = Get(key, &text); !s.ok()) return s;
    if (Status s = ParseDuration(text, seconds); !s.ok()) {
      return Status::Error(where_ + "'" + key + "': " + s.message());
    }
    return Status::Ok();
  }
  Status GetShape(const char* key, LengthShape* shape) const {
    if (!Has(key)) return Status::Ok();
    const YAML::Node& n = node_[key];
    Status s;
    if (n.IsScalar()) {
      s = Get(key, &shape->mean);
    } else if (!n.IsMap()) {
      return Status::Error(where_ + "'" + key + "' must be {mean, stddev}");
    } else {
      Fields inner(n, where_ + key + ": ");
      if (s = inner.CheckKnown({"mean", "stddev"}); !s.ok()) return s;
      if (s = inner.Get("mean", &shape->mean); !s.ok()) return s;
      s = inner.Get("stddev", &shape->stddev);
    }
    if (!s.ok()) return s;
    for (double v : {shape->mean, shape->stddev}) {
      if (!(v >= 0 && v <= kMaxLength)) {
        return Status::Error(where_ + "'" + key + "': lengths must be between 0 and 1000000");
      }
    }
    return Status::Ok();
  }
  const YAML::Node& node() const { return node_; }

 private:
  YAML::Node node_;
  std::string where_;
};

}  // namespace

Status ParseDuration(const std::string& text, double* seconds) {
  double value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || text.empty()) {
    return Status::Error("bad duration '" + text + "' (expected e.g. 500ms, 30s, 2m)");
  }
  std::string unit(p, text.data() + text.size());
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1;
  } else if (unit == "ms") {
    scale = 1e-3;
  } else if (unit == "us") {
    scale = 1e-6;
  } else if (unit == "m" || unit == "min") {
    scale = 60;
  } else if (unit == "h") {
    scale = 3600;
  } else {
    return Status::Error("bad duration unit in '" + text + "' (use ms, s, m or h)");
  }
  if (value < 0) return Status::Error("negative duration '" + text + "'");
  *seconds = value * scale;
  return Status::Ok();
}

Status LoadWorkloadFile(const std::string& path, const std::vector<std::string>& corpus_words,
                        const WorkloadDefaults& given, std::vector<Workload>* workloads) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status::Error("cannot read workload file " + path);
  } catch (const YAML::Exception& e) {
    return Status::Error(path + ": invalid YAML at line " + std::to_string(e.mark.line + 1) + ": " +
                         e.msg);
  }
  if (!root.IsMap()) return Status::Error(path + ": expected a mapping with 'workloads'");
  Fields top(root, path + ": ");
  if (Status s = top.CheckKnown({"workloads", "duration", "warmup", "requests", "warmup_requests",
                                 "timeout", "url", "model"});
      !s.ok()) {
    return s;
  }
  // File-level defaults.
  Workload defaults;
  defaults.prompts = nullptr;
  defaults.request.model = given.model;
  defaults.timeout_s = given.timeout_s;
  std::string default_url = given.url;
  if (Status s = top.Get("url", &default_url); !s.ok()) return s;
  if (Status s = top.Get("model", &defaults.request.model); !s.ok()) return s;
  if (Status s = top.GetDuration("duration", &defaults.load.duration_s); !s.ok()) return s;
  if (Status s = top.GetDuration("warmup", &defaults.load.warmup_s); !s.ok()) return s;
  if (Status s = top.GetDuration("timeout", &defaults.timeout_s); !s.ok()) return s;
  if (Status s = top.Get("requests", &defaults.load.requests); !s.ok()) return s;
  if (Status s = top.Get("warmup_requests", &defaults.load.warmup_requests); !s.ok()) return s;
  if (top.Has("requests") && top.Has("duration")) {
    return Status::Error(path + ": give requests or duration, not both");
  }
  const YAML::Node& list = root["workloads"];
  if (!list.IsSequence() || list.size() == 0) {
    return Status::Error(path + ": 'workloads' must be a non-empty list");
  }
  std::vector<Workload> parsed;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].IsMap())
      return Status::Error(path + ": workload " + std::to_string(i + 1) + " must be a mapping");
    Workload w = defaults;
    w.name = "workload" + std::to_string(i + 1);
    Fields f(list[i], path + ": workload " + std::to_string(i + 1) + ": ");
    if (Status s = f.CheckKnown({"name",          "url",        "model",           "endpoint",
                                 "stream",        "api_key",    "concurrency",     "rate",
                                 "arrival",       "burstiness", "max_concurrency", "requests",
                                 "duration",      "warmup",     "warmup_requests", "input_tokens",
                                 "output_tokens", "input_file", "extra_body",      "timeout",
                                 "ramp_up",       "tls_ca",     "insecure"});
        !s.ok()) {
      return s;
    }
    std::string url = default_url, endpoint = "chat", arrival = "poisson", input_file;
    LengthShape input{128, 0}, output{128, 0};
    Status s;
    if (s = f.Get("name", &w.name); !s.ok()) return s;
    if (!names.insert(w.name).second) {
      return Status::Error(path + ": duplicate workload name '" + w.name + "'");
    }
    Fields named(list[i], path + ": workload '" + w.name + "': ");
    if (s = named.Get("url", &url); !s.ok()) return s;
    if (s = named.Get("model", &w.request.model); !s.ok()) return s;
    if (s = named.Get("endpoint", &endpoint); !s.ok()) return s;
    if (s = named.Get("stream", &w.request.stream); !s.ok()) return s;
    if (s = named.Get("api_key", &w.target.api_key); !s.ok()) return s;
    if (s = named.Get("arrival", &arrival); !s.ok()) return s;
    if (s = named.Get("burstiness", &w.load.burstiness); !s.ok()) return s;
    // A workload's own bound replaces the file's, whichever kind that was.
    if (named.Has("requests") && named.Has("duration")) {
      return Status::Error(path + ": workload '" + w.name +
                           "': give requests or duration, not both");
    }
    if (named.Has("requests")) w.load.duration_s = 0;
    if (named.Has("duration")) w.load.requests = 0;
    if (s = named.Get("requests", &w.load.requests); !s.ok()) return s;
    if (s = named.Get("warmup_requests", &w.load.warmup_requests); !s.ok()) return s;
    if (s = named.GetDuration("duration", &w.load.duration_s); !s.ok()) return s;
    if (s = named.GetDuration("warmup", &w.load.warmup_s); !s.ok()) return s;
    if (s = named.GetDuration("timeout", &w.timeout_s); !s.ok()) return s;
    if (s = named.GetDuration("ramp_up", &w.load.ramp_up_s); !s.ok()) return s;
    if (s = named.GetShape("input_tokens", &input); !s.ok()) return s;
    if (s = named.GetShape("output_tokens", &output); !s.ok()) return s;
    if (s = named.Get("input_file", &input_file); !s.ok()) return s;
    bool has_concurrency = named.Has("concurrency"), has_rate = named.Has("rate");
    if (has_concurrency && has_rate) {
      return Status::Error(path + ": workload '" + w.name +
                           "': give concurrency (closed loop) or rate (open loop), not both");
    }
    if (has_rate) {
      w.load.mode = LoadMode::kOpenLoop;
      w.load.concurrency = 0;
      if (s = named.Get("rate", &w.load.rate); !s.ok()) return s;
      if (s = named.Get("max_concurrency", &w.load.concurrency); !s.ok()) return s;
    } else {
      w.load.mode = LoadMode::kClosedLoop;
      if (s = named.Get("concurrency", &w.load.concurrency); !s.ok()) return s;
    }
    if (named.Has("extra_body")) {
      w.request.extra_body = YamlToJson(list[i]["extra_body"]);
      if (!w.request.extra_body.is_object()) {
        return Status::Error(path + ": workload '" + w.name + "': extra_body must be a mapping");
      }
    }
    std::string name_where = path + ": workload '" + w.name + "': ";
    if (s = ParseTargetUrl(url, &w.target); !s.ok()) return Status::Error(name_where + s.message());
    // The command line's key and TLS settings are for the command line's server alone: the key is
    // often $OPENAI_API_KEY, exported for some other service, and must not go to every host a
    // workload file names.
    if (!named.Has("url") && !top.Has("url")) {
      w.target.api_key = given.api_key;
      w.target.ca_file = given.tls_ca;
      w.target.insecure = given.insecure;
    }
    if (named.Has("api_key")) named.Get("api_key", &w.target.api_key);
    if (s = named.Get("tls_ca", &w.target.ca_file); !s.ok()) return s;
    if (s = named.Get("insecure", &w.target.insecure); !s.ok()) return s;
    if (s = ParseEndpoint(endpoint, &w.request.endpoint); !s.ok()) {
      return Status::Error(name_where + s.message());
    }
    if (s = ParseArrival(arrival, &w.load.arrival); !s.ok()) {
      return Status::Error(name_where + s.message());
    }
    if (!input_file.empty()) {
      std::unique_ptr<PromptSource> source;
      if (s = LoadPromptsFile(input_file, output, &source); !s.ok()) {
        return Status::Error(name_where + s.message());
      }
      w.prompts = std::move(source);
    } else {
      w.prompts = MakeSyntheticPrompts(corpus_words, input, output);
    }
    if (s = ValidateWorkload(w); !s.ok()) return Status::Error(path + ": " + s.message());
    parsed.push_back(std::move(w));
  }
  *workloads = std::move(parsed);
  return Status::Ok();
}

}  // namespace gpufrac::bench
