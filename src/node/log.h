// Structured event log: one logfmt line per event on stderr
// ("ts=2026-11-25T01:02:03.456Z event=tenant.created id=chat gpu=0 ..."), so operators can grep
// and ship it without parsing prose.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace gpufrac::node {

using LogFields = std::vector<std::pair<std::string, std::string>>;

void LogEvent(const std::string& event, const LogFields& fields);

}  // namespace gpufrac::node
