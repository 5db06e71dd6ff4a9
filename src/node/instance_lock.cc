#include "node/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gpufrac::node {

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) close(fd_);
}

Status InstanceLock::Acquire(const std::string& guarded, const std::string& doing) {
  const std::string path = guarded + ".lock";
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir(path.substr(0, slash).c_str(), 0755);
  // O_CLOEXEC: a tenant the agent starts must not inherit the lock and keep it after the agent
  // dies, or no agent could start again while that tenant runs.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Error("cannot open the lock file '" + path + "': " + strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return Status::Error("another agent " + doing + " '" + guarded + "' (it holds '" + path +
                           "')");
    }
    return Status::Error("cannot lock '" + path + "': " + strerror(err));
  }
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  return Status::Ok();
}

}  // namespace gpufrac::node
