// One logfmt line per event on stderr, like the node agent's:
//   ts=2026-11-25T03:01:02.345Z event=replica.ready model=chat replica=sv-chat-1 port=40123
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace gpufrac::serve {

using LogFields = std::vector<std::pair<std::string, std::string>>;
void LogEvent(const std::string& event, const LogFields& fields);

}  // namespace gpufrac::serve
