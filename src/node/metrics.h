// /metrics in Prometheus' text exposition format (version 0.0.4): per GPU and per tenant figures
// read live from the ledgers. Only series with real values are exported: compute share and
// throttled time are absent until compute sharing exists.
#pragma once

#include <string>

#include "node/agent.h"

namespace gpufrac::node {

std::string RenderMetrics(Agent* agent);

}  // namespace gpufrac::node
