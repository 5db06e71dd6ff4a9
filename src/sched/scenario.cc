#include "sched/scenario.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/quantity.h"
#include "sched/yaml_reader.h"

namespace gpufrac::sched {
namespace {

// Upper bounds that catch typos (a missing unit, an extra zero) rather than real limits.
constexpr int kMaxNodesPerGroup = 100000;
constexpr int kMaxGpusPerNode = 64;
constexpr int kMaxReplicas = 100000;
constexpr double kMaxWeight = 1e6;

class ScenarioParser {
 public:
  ScenarioParser(Scenario* out, std::string base_dir) : s_(out), base_dir_(std::move(base_dir)) {
    s_->priority_classes = DefaultPriorityClasses();
  }

  bool Parse(const YAML::Node& root) {
    if (!r_.ExpectMap(root, "",
                      {"name", "description", "scheduler", "sim", "priority_classes", "cluster",
                       "queues", "workloads", "trace_file", "generator", "expect"})) {
      return false;
    }
    if (root["name"]) s_->name = r_.String(root["name"], "name");
    if (root["description"]) s_->description = r_.String(root["description"], "description");
    if (root["scheduler"]) ParseScheduler(root["scheduler"], "scheduler");
    if (root["sim"]) ParseSim(root["sim"], "sim");
    if (root["priority_classes"])
      ParsePriorityClasses(root["priority_classes"], "priority_classes");
    if (!root["cluster"]) return r_.Fail("cluster", "missing (the nodes to schedule on)");
    ParseCluster(root["cluster"], "cluster");
    if (!root["queues"]) return r_.Fail("queues", "missing (at least one queue)");
    if (r_.ExpectList(root["queues"], "queues")) {
      for (size_t i = 0; i < root["queues"].size() && r_.ok(); ++i) {
        ParseQueue(root["queues"][i], Index("queues", i), kNone);
      }
    }
    if (s_->queues.empty()) r_.Fail("queues", "at least one queue is needed");
    if (root["workloads"]) ParseWorkloads(root["workloads"], "workloads");
    if (root["trace_file"]) ParseTraceFile(root["trace_file"], "trace_file");
    if (root["generator"]) ParseGenerator(root["generator"], "generator");
    if (root["expect"]) ParseExpect(root["expect"], "expect");
    if (r_.ok()) CheckPinned();
    return r_.ok();
  }

  const std::string& error() const { return r_.error(); }

 private:
  void ParseScheduler(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectMap(n, p,
                      {"consolidate", "reclaim", "preempt", "max_evictions_per_workload",
                       "max_attempts_per_action", "max_candidate_nodes", "check_invariants"})) {
      return;
    }
    SchedulerConfig& c = s_->scheduler;
    if (n["consolidate"]) c.consolidate = r_.Bool(n["consolidate"], Child(p, "consolidate"));
    if (n["reclaim"]) c.reclaim = r_.Bool(n["reclaim"], Child(p, "reclaim"));
    if (n["preempt"]) c.preempt = r_.Bool(n["preempt"], Child(p, "preempt"));
    if (n["max_evictions_per_workload"]) {
      c.max_evictions_per_workload = r_.Integer(n["max_evictions_per_workload"],
                                                Child(p, "max_evictions_per_workload"), 1, 1000);
    }
    if (n["max_attempts_per_action"]) {
      c.max_attempts_per_action =
          r_.Integer(n["max_attempts_per_action"], Child(p, "max_attempts_per_action"), 0, 1000000);
    }
    if (n["max_candidate_nodes"]) {
      c.max_candidate_nodes =
          r_.Integer(n["max_candidate_nodes"], Child(p, "max_candidate_nodes"), 1, 1000000);
    }
    if (n["check_invariants"]) {
      c.check_invariants = r_.Bool(n["check_invariants"], Child(p, "check_invariants"));
    }
  }

  void ParseSim(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectMap(n, p, {"duration", "cycle_interval", "sample_interval", "warmup", "seed"})) {
      return;
    }
    SimSettings& sim = s_->sim;
    if (n["duration"]) sim.duration = r_.Seconds(n["duration"], Child(p, "duration"));
    if (n["cycle_interval"]) {
      sim.cycle_interval = r_.Seconds(n["cycle_interval"], Child(p, "cycle_interval"));
      if (r_.ok() && sim.cycle_interval <= 0) r_.Fail(Child(p, "cycle_interval"), "must be > 0");
    }
    if (n["sample_interval"]) {
      sim.sample_interval = r_.Seconds(n["sample_interval"], Child(p, "sample_interval"));
      if (r_.ok() && sim.sample_interval <= 0) r_.Fail(Child(p, "sample_interval"), "must be > 0");
    }
    if (n["warmup"]) sim.warmup = r_.Seconds(n["warmup"], Child(p, "warmup"));
    // Steady-state figures come from the samples after the warmup; there must be some.
    if (n["warmup"] && r_.ok() && sim.duration > 0 && sim.warmup >= sim.duration) {
      r_.Fail(Child(p, "warmup"), "must be shorter than sim.duration (" + Amount(sim.warmup) +
                                      " s >= " + Amount(sim.duration) +
                                      " s), or no sample is left for the steady state");
    }
    if (n["seed"])
      sim.seed = static_cast<uint64_t>(r_.Number(n["seed"], Child(p, "seed"), 0, 1e15));
  }

  void ParsePriorityClasses(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectList(n, p)) return;
    for (size_t i = 0; i < n.size() && r_.ok(); ++i) {
      const std::string ip = Index(p, i);
      if (!r_.ExpectMap(n[i], ip, {"name", "value", "preemptible"})) return;
      if (!n[i]["name"] || !n[i]["value"]) {
        r_.Fail(ip, "needs name and value");
        return;
      }
      PriorityClass pc;
      pc.name = r_.String(n[i]["name"], Child(ip, "name"));
      pc.value = r_.Integer(n[i]["value"], Child(ip, "value"), -1000000, 1000000);
      if (n[i]["preemptible"])
        pc.preemptible = r_.Bool(n[i]["preemptible"], Child(ip, "preemptible"));
      bool replaced = false;
      for (PriorityClass& existing : s_->priority_classes) {
        if (existing.name == pc.name) existing = pc, replaced = true;
      }
      if (!replaced) s_->priority_classes.push_back(pc);
    }
  }

  void ParseCluster(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectMap(n, p, {"node_groups"})) return;
    const std::string gp = Child(p, "node_groups");
    if (!n["node_groups"]) {
      r_.Fail(gp, "missing");
      return;
    }
    if (!r_.ExpectList(n["node_groups"], gp)) return;
    std::set<std::string> names;
    for (size_t i = 0; i < n["node_groups"].size() && r_.ok(); ++i) {
      const YAML::Node g = n["node_groups"][i];
      const std::string ip = Index(gp, i);
      if (!r_.ExpectMap(g, ip,
                        {"name", "count", "gpu_type", "gpu_memory", "gpus", "cpu", "memory",
                         "labels", "racks"})) {
        return;
      }
      for (const char* required : {"name", "gpus", "cpu", "memory"}) {
        if (!g[required]) r_.Fail(Child(ip, required), "missing");
      }
      if (!r_.ok()) return;
      NodeSpec node;
      const std::string name = r_.String(g["name"], Child(ip, "name"));
      const int count =
          g["count"] ? r_.Integer(g["count"], Child(ip, "count"), 1, kMaxNodesPerGroup) : 1;
      node.gpu_count = r_.Integer(g["gpus"], Child(ip, "gpus"), 0, kMaxGpusPerNode);
      if (node.gpu_count > 0) {
        if (!g["gpu_memory"]) r_.Fail(Child(ip, "gpu_memory"), "missing (nodes have GPUs)");
        if (!r_.ok()) return;
        node.gpu_memory_bytes = r_.Size(g["gpu_memory"], Child(ip, "gpu_memory"));
        node.gpu_type = g["gpu_type"] ? r_.String(g["gpu_type"], Child(ip, "gpu_type")) : "gpu";
      }
      node.cpu_milli = r_.CpuMilli(g["cpu"], Child(ip, "cpu"));
      node.memory_bytes = r_.Size(g["memory"], Child(ip, "memory"));
      if (g["labels"]) ParseLabels(g["labels"], Child(ip, "labels"), &node.labels);
      const int racks =
          g["racks"] ? r_.Integer(g["racks"], Child(ip, "racks"), 1, kMaxNodesPerGroup) : 0;
      if (!r_.ok()) return;
      for (int k = 0; k < count; ++k) {
        NodeSpec copy = node;
        copy.name = count == 1 ? name : name + "-" + std::to_string(k);
        if (racks > 0) copy.labels["rack"] = name + "-r" + std::to_string(k % racks);
        if (!names.insert(copy.name).second) {
          r_.Fail(Child(ip, "name"), "node name '" + copy.name + "' used twice");
          return;
        }
        s_->nodes.push_back(std::move(copy));
      }
    }
  }

  void ParseLabels(const YAML::Node& n, const std::string& p,
                   std::map<std::string, std::string>* out) {
    if (!n.IsMap()) {
      r_.Fail(p, "expected a map of label: value");
      return;
    }
    if (!r_.UniqueKeys(n, p)) return;
    for (const auto& kv : n) {
      const std::string key = kv.first.as<std::string>("");
      (*out)[key] = r_.String(kv.second, Child(p, key));
    }
  }

  bool ParseResources(const YAML::Node& n, const std::string& p, ResourceVec* out) {
    if (!r_.ExpectMap(n, p, {"gpu", "cpu", "memory"})) return false;
    if (n["gpu"]) (*out)[Resource::kGpu] = r_.Number(n["gpu"], Child(p, "gpu"), 0, 1e9);
    if (n["cpu"])
      (*out)[Resource::kCpu] = static_cast<double>(r_.CpuMilli(n["cpu"], Child(p, "cpu"))) / 1000.0;
    if (n["memory"])
      (*out)[Resource::kMemory] = static_cast<double>(r_.Size(n["memory"], Child(p, "memory")));
    return r_.ok();
  }

  void ParseQueue(const YAML::Node& n, const std::string& p, QueueId parent) {
    if (!r_.ExpectMap(n, p, {"name", "deserved", "weight", "limit", "children"})) return;
    if (!n["name"]) {
      r_.Fail(Child(p, "name"), "missing");
      return;
    }
    QueueSpec q;
    q.name = r_.String(n["name"], Child(p, "name"));
    q.parent = parent;
    for (const QueueSpec& other : s_->queues) {
      if (other.name == q.name) r_.Fail(Child(p, "name"), "queue '" + q.name + "' defined twice");
    }
    if (n["deserved"]) ParseResources(n["deserved"], Child(p, "deserved"), &q.deserved);
    if (n["weight"])
      q.over_quota_weight = r_.Number(n["weight"], Child(p, "weight"), 0, kMaxWeight);
    if (n["limit"]) {
      ResourceVec given;
      given.value.fill(-1);
      if (ParseResources(n["limit"], Child(p, "limit"), &given)) {
        for (int i = 0; i < kResourceCount; ++i) {
          if (given.value[i] >= 0) q.limit.value[i] = given.value[i];
          if (q.limit.value[i] < q.deserved.value[i]) {
            r_.Fail(Child(Child(p, "limit"), ResourceName(static_cast<Resource>(i))),
                    "limit is below the deserved quota");
          }
        }
      }
    }
    if (!r_.ok()) return;
    const QueueId id = static_cast<QueueId>(s_->queues.size());
    s_->queues.push_back(q);
    if (parent != kNone) s_->queues[parent].children.push_back(id);
    if (!n["children"]) return;
    if (!r_.ExpectList(n["children"], Child(p, "children"))) return;
    for (size_t i = 0; i < n["children"].size() && r_.ok(); ++i) {
      ParseQueue(n["children"][i], Index(Child(p, "children"), i), id);
    }
    if (r_.ok()) ReconcileDeserved(n, p, id);
  }

  // A child's quota is carved out of its parent's: a parent that leaves a resource's deserved
  // unset deserves what its children add up to (else a child's quota would be worth nothing,
  // its parent getting no share to pass down), and a child never deserves more than its
  // parent says it does.
  void ReconcileDeserved(const YAML::Node& n, const std::string& p, QueueId id) {
    const YAML::Node given = n["deserved"];
    for (int r = 0; r < kResourceCount && r_.ok(); ++r) {
      const char* key = ResourceName(static_cast<Resource>(r));
      const std::vector<QueueId> children = s_->queues[id].children;
      if (!given || !given[key]) {
        double sum = 0;
        for (QueueId c : children) sum += s_->queues[c].deserved.value[r];
        QueueSpec& q = s_->queues[id];
        q.deserved.value[r] = sum;
        if (q.limit.value[r] < sum) {
          r_.Fail(Child(Child(p, "limit"), key),
                  "limit is below the deserved quota its children add up to (" + Amount(sum) + ")");
        }
        continue;
      }
      const double parent = s_->queues[id].deserved.value[r];
      for (size_t i = 0; i < children.size(); ++i) {
        const double child = s_->queues[children[i]].deserved.value[r];
        if (child > parent * (1 + 1e-9)) {
          r_.Fail(
              Child(Child(Index(Child(p, "children"), i), "deserved"), key),
              "above the parent's deserved quota (" + Amount(child) + " > " + Amount(parent) + ")");
          return;
        }
      }
    }
  }

  static std::string Amount(double value) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", value);
    return buf;
  }

  QueueId LeafQueue(const YAML::Node& n, const std::string& p) {
    const std::string name = r_.String(n, p);
    for (size_t i = 0; i < s_->queues.size(); ++i) {
      if (s_->queues[i].name != name) continue;
      if (!s_->queues[i].children.empty()) {
        r_.Fail(p, "queue '" + name + "' has child queues; workloads go to leaf queues");
        return kNone;
      }
      return static_cast<QueueId>(i);
    }
    r_.Fail(p, "unknown queue '" + name + "'");
    return kNone;
  }

  // GPU request keys shared by workloads and generator shapes; exactly one of gpu, gpus,
  // gpu_memory (none: a CPU-only workload).
  GpuRequest ParseGpuRequest(const YAML::Node& n, const std::string& p) {
    GpuRequest g;
    const int given = (n["gpu"] ? 1 : 0) + (n["gpus"] ? 1 : 0) + (n["gpu_memory"] ? 1 : 0);
    if (given > 1) {
      r_.Fail(p, "give only one of gpu (fraction), gpus (whole) and gpu_memory");
      return g;
    }
    if (n["gpus"]) {
      g.kind = GpuRequestKind::kWhole;
      g.count = r_.Integer(n["gpus"], Child(p, "gpus"), 1, kMaxGpusPerNode);
    } else if (n["gpu"]) {
      g.kind = GpuRequestKind::kPortion;
      g.portion_milli = FractionMilli(n["gpu"], Child(p, "gpu"));
      g.portion_limit =
          n["gpu_limit"] ? FractionMilli(n["gpu_limit"], Child(p, "gpu_limit")) : g.portion_milli;
      if (r_.ok() && g.portion_limit < g.portion_milli) {
        r_.Fail(Child(p, "gpu_limit"), "limit is below the request");
      }
    } else if (n["gpu_memory"]) {
      g.kind = GpuRequestKind::kMemory;
      g.memory_bytes = r_.Size(n["gpu_memory"], Child(p, "gpu_memory"));
      g.memory_limit = n["gpu_memory_limit"]
                           ? r_.Size(n["gpu_memory_limit"], Child(p, "gpu_memory_limit"))
                           : g.memory_bytes;
      if (r_.ok() && g.memory_limit < g.memory_bytes) {
        r_.Fail(Child(p, "gpu_memory_limit"), "limit is below the request");
      }
    }
    if (n["gpu_limit"] && g.kind != GpuRequestKind::kPortion) {
      r_.Fail(Child(p, "gpu_limit"), "only goes with gpu (a fraction)");
    }
    if (n["gpu_memory_limit"] && g.kind != GpuRequestKind::kMemory) {
      r_.Fail(Child(p, "gpu_memory_limit"), "only goes with gpu_memory");
    }
    return g;
  }

  int64_t FractionMilli(const YAML::Node& n, const std::string& p) {
    const std::string text = r_.String(n, p);
    if (!r_.ok()) return 0;
    double fraction = 0;
    const ParseError e = ParseFraction(text.c_str(), &fraction);
    if (e != ParseError::kNone) {
      r_.Fail(p, "bad fraction '" + text +
                     "' (want a number in (0, 1]; whole GPUs go in gpus): " + ParseErrorText(e));
      return 0;
    }
    const int64_t milli = std::llround(fraction * kMilliPerGpu);
    if (milli < 1) r_.Fail(p, "fraction below 0.001 of a GPU");
    return milli;
  }

  // Keys common to workloads and generator classes.
  void ParseWorkloadSpec(const YAML::Node& n, const std::string& p, WorkloadSpec* w) {
    if (!n["queue"]) {
      r_.Fail(Child(p, "queue"), "missing");
      return;
    }
    w->queue = LeafQueue(n["queue"], Child(p, "queue"));
    w->priority_class = n["priority"] ? r_.String(n["priority"], Child(p, "priority")) : "training";
    const PriorityClass* pc = nullptr;
    for (const PriorityClass& c : s_->priority_classes) {
      if (c.name == w->priority_class) pc = &c;
    }
    if (pc == nullptr) {
      r_.Fail(Child(p, "priority"), "unknown priority class '" + w->priority_class + "'");
      return;
    }
    w->priority = pc->value;
    w->preemptible =
        n["preemptible"] ? r_.Bool(n["preemptible"], Child(p, "preemptible")) : pc->preemptible;
    if (n["cpu"]) w->cpu_milli = r_.CpuMilli(n["cpu"], Child(p, "cpu"));
    if (n["memory"]) w->memory_bytes = r_.Size(n["memory"], Child(p, "memory"));
    if (n["gpu_type"]) w->gpu_type = r_.String(n["gpu_type"], Child(p, "gpu_type"));
    if (n["node_selector"])
      ParseLabels(n["node_selector"], Child(p, "node_selector"), &w->node_selector);
    if (n["strategy"]) {
      const std::string s = r_.String(n["strategy"], Child(p, "strategy"));
      if (s == "spread") {
        w->strategy = PlacementStrategy::kSpread;
      } else if (s != "binpack" && r_.ok()) {
        r_.Fail(Child(p, "strategy"), "expected binpack or spread, got '" + s + "'");
      }
    }
  }

  void ParseWorkloads(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectList(n, p)) return;
    for (size_t i = 0; i < n.size() && r_.ok(); ++i) ParseWorkloadEntry(n[i], Index(p, i));
  }

  // One workload (with its replicas) from the workloads list or a trace file row.
  void ParseWorkloadEntry(const YAML::Node& w, const std::string& ip) {
    if (!r_.ExpectMap(w, ip, {"name",          "queue",     "priority",
                              "preemptible",   "gpu",       "gpus",
                              "gpu_memory",    "gpu_limit", "gpu_memory_limit",
                              "cpu",           "memory",    "gpu_type",
                              "node_selector", "strategy",  "arrival",
                              "duration",      "replicas",  "gang",
                              "node",          "gpu_index"})) {
      return;
    }
    if (!w["name"]) {
      r_.Fail(Child(ip, "name"), "missing");
      return;
    }
    TraceEntry e;
    e.spec.name = r_.String(w["name"], Child(ip, "name"));
    ParseWorkloadSpec(w, ip, &e.spec);
    e.spec.gpu = ParseGpuRequest(w, ip);
    if (w["arrival"]) e.arrival = r_.Seconds(w["arrival"], Child(ip, "arrival"));
    if (w["duration"]) e.duration = r_.Seconds(w["duration"], Child(ip, "duration"));
    const int replicas =
        w["replicas"] ? r_.Integer(w["replicas"], Child(ip, "replicas"), 1, kMaxReplicas) : 1;
    if (w["gang"]) {
      const std::string gp = Child(ip, "gang");
      if (!r_.ExpectMap(w["gang"], gp, {"min", "topology"})) return;
      GangEntry gang;
      gang.name = e.spec.name;
      gang.min_members =
          w["gang"]["min"] ? r_.Integer(w["gang"]["min"], Child(gp, "min"), 1, replicas) : replicas;
      if (w["gang"]["topology"]) {
        gang.topology_key = r_.String(w["gang"]["topology"], Child(gp, "topology"));
      }
      e.spec.gang = static_cast<GangId>(s_->gangs.size());
      s_->gangs.push_back(gang);
    }
    if (w["node"]) {
      e.bound_node = r_.String(w["node"], Child(ip, "node"));
      const NodeSpec* bound = nullptr;
      for (const NodeSpec& node : s_->nodes) {
        if (node.name == e.bound_node) bound = &node;
      }
      if (bound == nullptr && r_.ok()) {
        r_.Fail(Child(ip, "node"), "unknown node '" + e.bound_node + "'");
      }
      if (replicas != 1) r_.Fail(Child(ip, "node"), "a bound workload cannot have replicas");
      if (w["gpu_index"] && r_.ExpectList(w["gpu_index"], Child(ip, "gpu_index"))) {
        for (size_t k = 0; k < w["gpu_index"].size() && r_.ok(); ++k) {
          const std::string kp = Index(Child(ip, "gpu_index"), k);
          const int index =
              r_.Integer(w["gpu_index"][k], kp, 0, bound ? std::max(0, bound->gpu_count - 1) : 0);
          if (r_.ok() && std::count(e.bound_gpus.begin(), e.bound_gpus.end(), index) > 0) {
            r_.Fail(kp, "GPU " + std::to_string(index) + " listed twice");
          }
          e.bound_gpus.push_back(index);
        }
      }
      // Pinned workloads are the cluster's state when the simulation starts.
      if (w["arrival"] && e.arrival > 0 && r_.ok()) {
        r_.Fail(Child(ip, "arrival"),
                "a workload pinned with node is bound from the start; drop arrival or node");
      }
      if (e.bound_gpus.empty() && e.spec.gpu.kind != GpuRequestKind::kNoGpu) {
        r_.Fail(Child(ip, "gpu_index"), "missing (a bound GPU workload names its GPUs)");
      }
    } else if (w["gpu_index"]) {
      r_.Fail(Child(ip, "gpu_index"), "only goes with node");
    }
    if (!r_.ok()) return;
    for (int k = 0; k < replicas; ++k) {
      TraceEntry copy = e;
      if (replicas > 1) copy.spec.name = e.spec.name + "-" + std::to_string(k);
      if (!workload_names_.insert(copy.spec.name).second) {
        r_.Fail(Child(ip, "name"), "workload name '" + copy.spec.name + "' used twice");
        return;
      }
      if (!copy.bound_node.empty()) pinned_.push_back({s_->trace.size(), ip});
      s_->trace.push_back(std::move(copy));
    }
  }

  // A CSV trace: a header naming columns (a subset of the workload keys), then one workload per
  // row; empty cells are left out. Relative paths are resolved against the scenario's folder.
  void ParseTraceFile(const YAML::Node& n, const std::string& p) {
    const std::string name = r_.String(n, p);
    if (!r_.ok()) return;
    const std::string path =
        name.front() == '/' || base_dir_.empty() ? name : base_dir_ + "/" + name;
    std::ifstream in(path);
    if (!in) {
      r_.Fail(p, "cannot read trace file '" + path + "'");
      return;
    }
    static const std::set<std::string> kColumns = {
        "name",     "queue",      "priority", "preemptible", "gpu",
        "gpus",     "gpu_memory", "cpu",      "memory",      "gpu_type",
        "strategy", "arrival",    "duration", "gpu_limit",   "gpu_memory_limit"};
    std::vector<std::string> header;
    std::string line;
    for (int line_no = 1; std::getline(in, line) && r_.ok(); ++line_no) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      const std::string where = p + "(" + name + ":" + std::to_string(line_no) + ")";
      std::vector<std::string> cells = SplitCsv(line);
      if (header.empty()) {
        for (const std::string& column : cells) {
          if (!kColumns.count(column)) {
            r_.Fail(where, "unknown column '" + column + "'");
            return;
          }
        }
        header = std::move(cells);
        continue;
      }
      if (cells.size() != header.size()) {
        r_.Fail(where, std::to_string(cells.size()) + " cells for " +
                           std::to_string(header.size()) + " columns");
        return;
      }
      YAML::Node row(YAML::NodeType::Map);
      for (size_t c = 0; c < cells.size(); ++c) {
        if (!cells[c].empty()) row[header[c]] = cells[c];
      }
      ParseWorkloadEntry(row, where);
    }
    if (r_.ok() && header.empty()) r_.Fail(p, "trace file '" + path + "' has no header");
  }

  // A generator names its workloads <name>-<n> (gang members <name>-<n>-m<k>). Two workloads
  // with one name would be indistinguishable in decisions and reports.
  void CheckGeneratorName(const std::string& name, const std::string& p) {
    for (const GeneratorClass& other : s_->generator) {
      if (other.name == name) {
        r_.Fail(p, "generator '" + name + "' defined twice");
        return;
      }
    }
    for (const std::string& taken : workload_names_) {
      if (IsGeneratedName(taken, name)) {
        r_.Fail(p,
                "generated names '" + name + "-<n>' would collide with workload '" + taken + "'");
        return;
      }
    }
  }

  // Whether `name` is of the form <generator>-<digits>, or <generator>-<digits>-m<digits>.
  static bool IsGeneratedName(const std::string& name, const std::string& generator) {
    if (name.size() <= generator.size() + 1 || name.compare(0, generator.size(), generator) != 0 ||
        name[generator.size()] != '-') {
      return false;
    }
    auto digits = [](const std::string& text) {
      return !text.empty() && std::all_of(text.begin(), text.end(),
                                          [](unsigned char ch) { return std::isdigit(ch) != 0; });
    };
    const std::string rest = name.substr(generator.size() + 1);
    const size_t m = rest.find("-m");
    return m == std::string::npos ? digits(rest)
                                  : digits(rest.substr(0, m)) && digits(rest.substr(m + 2));
  }

  static std::vector<std::string> SplitCsv(const std::string& line) {
    std::vector<std::string> cells(1);
    for (char c : line) {
      if (c == ',') {
        cells.emplace_back();
      } else if (c != ' ' && c != '\t') {
        cells.back() += c;
      }
    }
    return cells;
  }

  void ParseGenerator(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectList(n, p)) return;
    for (size_t i = 0; i < n.size() && r_.ok(); ++i) {
      const YAML::Node c = n[i];
      const std::string ip = Index(p, i);
      if (!r_.ExpectMap(c, ip,
                        {"name", "queue", "priority", "preemptible", "shapes", "cpu", "memory",
                         "gpu_type", "node_selector", "strategy", "rate", "mean_duration",
                         "gang_size", "gang_topology"})) {
        return;
      }
      for (const char* required : {"name", "rate", "mean_duration", "shapes"}) {
        if (!c[required]) r_.Fail(Child(ip, required), "missing");
      }
      if (!r_.ok()) return;
      GeneratorClass g;
      g.name = r_.String(c["name"], Child(ip, "name"));
      CheckGeneratorName(g.name, Child(ip, "name"));
      ParseWorkloadSpec(c, ip, &g.spec);
      g.rate = r_.Number(c["rate"], Child(ip, "rate"), 0, 1e6);
      g.mean_duration = r_.Seconds(c["mean_duration"], Child(ip, "mean_duration"));
      if (r_.ok() && g.mean_duration <= 0) r_.Fail(Child(ip, "mean_duration"), "must be > 0");
      if (c["gang_size"])
        g.gang_size = r_.Integer(c["gang_size"], Child(ip, "gang_size"), 1, kMaxReplicas);
      if (c["gang_topology"]) {
        g.gang_topology = r_.String(c["gang_topology"], Child(ip, "gang_topology"));
        if (r_.ok() && g.gang_size <= 0) r_.Fail(Child(ip, "gang_topology"), "needs gang_size");
      }
      const std::string sp = Child(ip, "shapes");
      if (!r_.ExpectList(c["shapes"], sp)) return;
      for (size_t k = 0; k < c["shapes"].size() && r_.ok(); ++k) {
        const std::string kp = Index(sp, k);
        if (!r_.ExpectMap(c["shapes"][k], kp,
                          {"gpu", "gpus", "gpu_memory", "gpu_limit", "gpu_memory_limit"}))
          return;
        g.shapes.push_back(ParseGpuRequest(c["shapes"][k], kp));
      }
      if (r_.ok() && g.shapes.empty()) r_.Fail(sp, "at least one shape is needed");
      s_->generator.push_back(std::move(g));
    }
  }

  void ParseNameList(const YAML::Node& n, const std::string& p, std::vector<std::string>* out) {
    if (!r_.ExpectList(n, p)) return;
    for (size_t i = 0; i < n.size(); ++i) out->push_back(r_.String(n[i], Index(p, i)));
  }

  void ParseExpect(const YAML::Node& n, const std::string& p) {
    if (!r_.ExpectMap(n, p, {"cycles", "bound", "pending", "evicted", "reason_contains"})) return;
    Expectations& e = s_->expect;
    e.present = true;
    if (n["cycles"]) e.cycles = r_.Integer(n["cycles"], Child(p, "cycles"), 1, 1000);
    if (n["bound"]) ParseLabels(n["bound"], Child(p, "bound"), &e.bound);
    if (n["reason_contains"])
      ParseLabels(n["reason_contains"], Child(p, "reason_contains"), &e.reason_contains);
    if (n["pending"]) ParseNameList(n["pending"], Child(p, "pending"), &e.pending);
    if (n["evicted"]) ParseNameList(n["evicted"], Child(p, "evicted"), &e.evicted);
  }

  // Binds the pinned workloads, in order, as the simulation will at its start, so that one that
  // does not fit (GPU full, node short of CPU, queue limit) is refused here with its key.
  void CheckPinned() {
    if (pinned_.empty()) return;
    ClusterState state = BuildClusterState(*s_);
    for (const auto& [index, path] : pinned_) {
      WorkloadId id = kNone;
      std::string error;
      if (!AddTraceEntry(&state, s_->trace[index], &id, &error)) {
        r_.Fail(Child(path, "node"), error);
        return;
      }
    }
  }

  Scenario* s_;
  std::string base_dir_;
  std::vector<std::pair<size_t, std::string>>
      pinned_;  // trace index, key path  // folder of the scenario file, for relative trace paths
  std::set<std::string> workload_names_;
  YamlReader r_;
};

}  // namespace

Status ParseScenario(const std::string& text, const std::string& source_name, Scenario* out) {
  *out = Scenario{};
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::Error(source_name + ": not valid YAML: line " + std::to_string(e.mark.line + 1) +
                         ": " + e.msg);
  }
  const std::string base_dir = std::filesystem::path(source_name).parent_path().string();
  ScenarioParser parser(out, base_dir);
  bool ok = false;
  try {
    ok = parser.Parse(root);
  } catch (const YAML::Exception& e) {
    return Status::Error(source_name + ": line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!ok) return Status::Error(source_name + ": " + parser.error());
  if (out->trace.empty() && out->generator.empty()) {
    return Status::Error(source_name +
                         ": workloads: give workloads, a trace_file, a generator, or a mix");
  }
  if (!out->generator.empty() && out->sim.duration <= 0) {
    return Status::Error(source_name + ": sim.duration: needed with a generator");
  }
  return Status::Ok();
}

Status LoadScenarioFile(const std::string& path, Scenario* out) {
  std::ifstream in(path);
  if (!in) return Status::Error(path + ": cannot read the scenario file");
  std::stringstream text;
  text << in.rdbuf();
  return ParseScenario(text.str(), path, out);
}

}  // namespace gpufrac::sched
