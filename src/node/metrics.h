// /metrics in Prometheus' text exposition format (version 0.0.4): per GPU and per tenant figures
// read live from the ledgers, compute figures included (kept there by the compute-sharing
// runtime). Only series with real values are exported.
#pragma once

#include <string>

#include "node/agent.h"

namespace gpufrac::node {

std::string RenderMetrics(Agent* agent);

}  // namespace gpufrac::node
