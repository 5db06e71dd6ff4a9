// Replicas left behind by a gateway that died without cleaning up (kill -9, a crash): their tenant
// ids name the gateway's pid ("sv<pid>-<model>-<n>"), so a new gateway can tell them apart from
// the replicas of a gateway still running on the host, and delete them through the agent.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "serve/node_client.h"

namespace gpufrac::serve {

// Whether a tenant id is a replica of a gateway process that no longer runs, or of an earlier
// process that had this one's pid. Call it before this process has created any replica.
bool IsOrphanReplica(const std::string& tenant_id);

// Deletes every orphan replica on the node (in parallel); *deleted gets their ids.
Status DeleteOrphanReplicas(const NodeClient& node, std::vector<std::string>* deleted);

}  // namespace gpufrac::serve
