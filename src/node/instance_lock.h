// One agent per state file and per socket: an exclusive flock(2) on a lock file next to each,
// held for the agent's life. Taken before anything else is touched, so that a second agent
// started by mistake is refused before it can adopt the first one's tenants or unlink its socket.
// The kernel drops the lock when the process dies, so a kill -9 never leaves a stale lock behind.
#pragma once

#include <string>

#include "common/status.h"

namespace gpufrac::node {

class InstanceLock {
 public:
  InstanceLock() = default;
  ~InstanceLock();
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;

  // Locks `guarded` + ".lock" (created if missing). When another process holds it, refuses with
  // "another agent <doing> '<guarded>' (it holds '<guarded>.lock')". A lock file found unlinked
  // once locked (Discard by a start that failed meanwhile) is let go and the path tried again, so
  // that two agents can never hold locks on two different files of the same name.
  Status Acquire(const std::string& guarded, const std::string& doing);
  // For a start that failed: removes the lock file if this lock created it (one that existed
  // before stays, as it would after a successful run), then releases the lock. Removing it while
  // still holding the lock is what keeps this safe against an agent opening it meanwhile (see
  // Acquire).
  void Discard();
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::string path_;
  bool created_ = false;  // this lock created the file
};

}  // namespace gpufrac::node
