#include "sched/yaml_reader.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "common/quantity.h"

namespace gpufrac::sched {

std::string Child(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

bool YamlReader::Fail(const std::string& path, const std::string& reason) {
  if (error_.empty()) error_ = (path.empty() ? std::string("(top level)") : path) + ": " + reason;
  return false;
}

bool YamlReader::ExpectMap(const YAML::Node& node, const std::string& path,
                           std::initializer_list<const char*> allowed) {
  if (!node.IsMap()) return Fail(path, "expected a map");
  if (!UniqueKeys(node, path)) return false;
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>("");
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) return Fail(Child(path, key), "unknown key");
  }
  return true;
}

bool YamlReader::UniqueKeys(const YAML::Node& node, const std::string& path) {
  // The YAML parser keeps both entries of a repeated key and lookups see only the first, so a
  // second value would be dropped without a word.
  std::vector<std::string> seen;
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>("");
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return Fail(Child(path, key), "key given twice");
    }
    seen.push_back(std::move(key));
  }
  return true;
}

bool YamlReader::ExpectList(const YAML::Node& node, const std::string& path) {
  if (!node.IsSequence()) return Fail(path, "expected a list");
  return true;
}

bool YamlReader::Scalar(const YAML::Node& node, const std::string& path, std::string* text) {
  if (!node.IsScalar()) return Fail(path, "expected a single value");
  *text = node.Scalar();
  if (text->empty()) return Fail(path, "empty value");
  return true;
}

std::string YamlReader::String(const YAML::Node& node, const std::string& path) {
  std::string text;
  Scalar(node, path, &text);
  return text;
}

bool YamlReader::Bool(const YAML::Node& node, const std::string& path) {
  std::string text;
  if (!Scalar(node, path, &text)) return false;
  if (text == "true" || text == "yes") return true;
  if (text == "false" || text == "no") return false;
  Fail(path, "expected true or false, got '" + text + "'");
  return false;
}

double YamlReader::Number(const YAML::Node& node, const std::string& path, double min, double max) {
  std::string text;
  if (!Scalar(node, path, &text)) return 0;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || errno != 0 || !std::isfinite(v)) {
    Fail(path, "expected a number, got '" + text + "'");
    return 0;
  }
  if (v < min || v > max) {
    char range[96];
    std::snprintf(range, sizeof(range), "must be between %g and %g, got %s", min, max,
                  text.c_str());
    Fail(path, range);
    return 0;
  }
  return v;
}

int YamlReader::Integer(const YAML::Node& node, const std::string& path, int min, int max) {
  const double v = Number(node, path, min, max);
  if (ok() && v != std::floor(v)) Fail(path, "expected a whole number");
  return static_cast<int>(v);
}

uint64_t YamlReader::Size(const YAML::Node& node, const std::string& path) {
  std::string text;
  if (!Scalar(node, path, &text)) return 0;
  uint64_t bytes = 0;
  const ParseError e = ParseSize(text.c_str(), &bytes);
  if (e != ParseError::kNone) {
    Fail(path, std::string("bad size '") + text + "': " + ParseErrorText(e));
    return 0;
  }
  return bytes;
}

int64_t YamlReader::CpuMilli(const YAML::Node& node, const std::string& path) {
  std::string text;
  if (!Scalar(node, path, &text)) return 0;
  const bool milli = text.back() == 'm';
  if (milli) text.pop_back();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v) || v < 0) {
    Fail(path, "expected CPU cores (4, 0.5 or 500m), got '" + node.Scalar() + "'");
    return 0;
  }
  return static_cast<int64_t>(std::llround(milli ? v : v * 1000));
}

double YamlReader::Seconds(const YAML::Node& node, const std::string& path) {
  std::string text;
  if (!Scalar(node, path, &text)) return 0;
  double unit = 1;
  switch (text.back()) {
    case 's':
      text.pop_back();
      break;
    case 'm':
      unit = 60, text.pop_back();
      break;
    case 'h':
      unit = 3600, text.pop_back();
      break;
    default:
      break;
  }
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v) || v < 0) {
    Fail(path, "expected a duration (30, 30s, 10m, 2h), got '" + node.Scalar() + "'");
    return 0;
  }
  return v * unit;
}

}  // namespace gpufrac::sched
