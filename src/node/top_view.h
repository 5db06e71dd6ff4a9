// What `gpufrac top` draws, as a pure function of the agent's /v1/gpus and /v1/tenants answers,
// so that it is tested without a terminal.
//
//   GPU 0  H100                  [aaaaaaaabbbb::::::..........................]  30.0/80.0GiB
//
// One bar per GPU, `width` cells for the card's memory. Each of this agent's tenants on it gets a
// letter for the memory it holds (used) and ':' for what it is promised but does not use
// (request - used); '#' is memory committed to tenants the agent does not manage (a gpufrac run);
// '.' is free. A legend below maps letters to tenants. NVML's compute busy follows each GPU's
// figures and each tenant's compute share its legend line, when the agent reports them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gpufrac::node {

std::string RenderTop(const nlohmann::json& gpus, const nlohmann::json& tenants, int width);

}  // namespace gpufrac::node
