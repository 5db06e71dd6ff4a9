// Which replica tenants a starting gateway deletes as left behind by another gateway.
#include "serve/orphans.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace gpufrac::serve {
namespace {

TEST(ServeOrphansTest, ReplicasOfGatewaysThatNoLongerRunAreOrphans) {
  EXPECT_TRUE(IsOrphanReplica("sv999999999-chat-1"));  // no such process
  EXPECT_FALSE(IsOrphanReplica("batchjob"));
  EXPECT_FALSE(IsOrphanReplica("sv-chat-1"));
  EXPECT_FALSE(IsOrphanReplica("svx12-chat-1"));
}

TEST(ServeOrphansTest, ATenantNamedForThisVeryPidIsAPredecessorsNotOurs) {
  // A gateway restarted in a container gets the pid its predecessor had; it has created nothing
  // yet when it looks, so such a replica can only be the predecessor's.
  EXPECT_TRUE(IsOrphanReplica("sv" + std::to_string(getpid()) + "-chat-1"));
}

}  // namespace
}  // namespace gpufrac::serve
