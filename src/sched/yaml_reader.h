// Small helpers over yaml-cpp that read typed values and remember the first error as
// "<key path>: <reason>", so that a bad scenario is refused with one line that names the key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace gpufrac::sched {

class YamlReader {
 public:
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // Records the first failure only; always returns false so callers can `return r.Fail(...)`.
  bool Fail(const std::string& path, const std::string& reason);

  // The node must be a map with only `allowed` keys, each given once.
  bool ExpectMap(const YAML::Node& node, const std::string& path,
                 std::initializer_list<const char*> allowed);
  // The map's keys must each be given once.
  bool UniqueKeys(const YAML::Node& node, const std::string& path);
  bool ExpectList(const YAML::Node& node, const std::string& path);

  std::string String(const YAML::Node& node, const std::string& path);
  bool Bool(const YAML::Node& node, const std::string& path);
  double Number(const YAML::Node& node, const std::string& path, double min, double max);
  int Integer(const YAML::Node& node, const std::string& path, int min, int max);
  uint64_t Size(const YAML::Node& node, const std::string& path);     // "80GiB", bytes
  int64_t CpuMilli(const YAML::Node& node, const std::string& path);  // 4, 0.5, "500m"
  double Seconds(const YAML::Node& node, const std::string& path);    // 30, "30s", "10m", "2h"

 private:
  bool Scalar(const YAML::Node& node, const std::string& path, std::string* text);
  std::string error_;
};

// "a.b" + "c" -> "a.b.c"; "list" + 3 -> "list[3]".
std::string Child(const std::string& path, const std::string& key);
std::string Index(const std::string& path, size_t i);

}  // namespace gpufrac::sched
