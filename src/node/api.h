// The agent's HTTP+JSON API (/v1/...) and /metrics: one flat route table; JSON is parsed into
// structs here, at the edge, and nowhere else. Documented in docs/api.md.
#pragma once

#include "node/agent.h"
#include "node/http_server.h"

namespace gpufrac::node {

// The handler for HttpServer. `agent` must outlive it.
HttpHandler MakeApiHandler(Agent* agent);

// Parses a POST /v1/tenants body. Refuses malformed JSON, unknown fields, wrong types and
// unparsable sizes, naming the field.
Status ParseCreateTenant(const std::string& body, CreateTenantRequest* out);

}  // namespace gpufrac::node
