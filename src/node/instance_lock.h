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

  // Locks `guarded` + ".lock" (created if missing; never removed, since removing a lock file
  // races with the next agent opening it). When another process holds it, refuses with
  // "another agent <doing> '<guarded>' (it holds '<guarded>.lock')".
  Status Acquire(const std::string& guarded, const std::string& doing);
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace gpufrac::node
