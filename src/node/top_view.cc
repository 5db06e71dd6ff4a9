#include "node/top_view.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/human_bytes.h"
#include "common/quantity.h"

namespace gpufrac::node {
namespace {

// Cells for `bytes` of a card of `total`, rounded to nearest, so that segments add up sensibly.
int Cells(uint64_t bytes, uint64_t total, int width) {
  if (total == 0) return 0;
  return static_cast<int>((static_cast<long double>(bytes) * width + total / 2) / total);
}

std::string Percent(double share) {
  char buf[16];
  snprintf(buf, sizeof buf, "%.0f%%", share * 100.0);
  return buf;
}

}  // namespace

std::string RenderTop(const nlohmann::json& gpus, const nlohmann::json& tenants, int width) {
  std::string out;
  const std::string letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  size_t next_letter = 0;
  std::string legend;
  for (const auto& g : gpus) {
    const int index = g["index"].get<int>();
    const uint64_t total = g["memory"]["total"].get<uint64_t>();
    const uint64_t committed = g["memory"]["committed"].get<uint64_t>();
    std::string bar;
    uint64_t ours = 0;
    for (const auto& t : tenants) {
      if (t["gpu"].get<int>() != index || t["state"] == "exited") continue;
      const uint64_t used = t["memory"]["used"].get<uint64_t>();
      const uint64_t request = t["memory"]["request"].get<uint64_t>();
      const char letter = letters[next_letter++ % letters.size()];
      bar += std::string(static_cast<size_t>(Cells(used, total, width)), letter);
      if (request > used) {
        bar += std::string(static_cast<size_t>(Cells(request - used, total, width)), ':');
      }
      ours += std::max(used, request);
      legend += std::string("  ") + letter + " " + t["id"].get<std::string>() + "  GPU " +
                std::to_string(index) + "  used " + Human(used) + " request " + Human(request) +
                " limit " + Human(t["memory"]["limit"].get<uint64_t>()) + "  " +
                t["state"].get<std::string>();
      // The compute-sharing runtime's last decided share, when the agent reports one.
      if (t.contains("compute") && t["compute"].contains("share") &&
          t["compute"]["share"].is_number()) {
        legend += "  compute share " + Percent(t["compute"]["share"].get<double>());
      }
      legend += "\n";
    }
    if (committed > ours) {
      bar += std::string(static_cast<size_t>(Cells(committed - ours, total, width)), '#');
    }
    if (static_cast<int>(bar.size()) > width) bar.resize(static_cast<size_t>(width));
    bar += std::string(static_cast<size_t>(width) - bar.size(), '.');
    char head[160];
    snprintf(head, sizeof head, "GPU %-2d %-18.18s [", index, g["name"].get<std::string>().c_str());
    out += head + bar + "]  " + Human(committed) + "/" + Human(total) + " committed, " +
           Human(g["memory"]["used"].get<uint64_t>()) + " used";
    // NVML's utilization, when the agent sampled it.
    if (g.contains("compute") && g["compute"].contains("busy") &&
        g["compute"]["busy"].is_number()) {
      out += ", compute busy " + Percent(g["compute"]["busy"].get<double>());
    }
    if (g.contains("health") && g["health"].is_string() && g["health"] != "ok") {
      out += ", " + g["health"].get<std::string>();
    }
    out += "\n";
  }
  if (!legend.empty()) out += "\n" + legend;
  out += "\n  letter: used   ':' promised, unused   '#' other owners   '.' free\n";
  return out;
}

}  // namespace gpufrac::node
