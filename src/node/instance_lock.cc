#include "node/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gpufrac::node {
namespace {

// An agent that locked a file which another removed just before retries; a handful of retries
// covers any number of failed starts racing with it.
constexpr int kAttempts = 16;

// True when `fd` is still the file at `path` (it was not unlinked or replaced after it was opened).
bool StillAt(int fd, const std::string& path) {
  struct stat held, now;
  return fstat(fd, &held) == 0 && stat(path.c_str(), &now) == 0 && held.st_dev == now.st_dev &&
         held.st_ino == now.st_ino;
}

}  // namespace

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) close(fd_);
}

Status InstanceLock::Acquire(const std::string& guarded, const std::string& doing) {
  const std::string path = guarded + ".lock";
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir(path.substr(0, slash).c_str(), 0755);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    // O_CLOEXEC: a tenant the agent starts must not inherit the lock and keep it after the agent
    // dies, or no agent could start again while that tenant runs. O_EXCL first, to know whether
    // this start created the file (Discard removes only such a file).
    bool created = true;
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
      created = false;
      fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) continue;  // removed between the two opens
    }
    if (fd < 0) {
      return Status::Error("cannot open the lock file '" + path + "': " + strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      close(fd);
      if (err == EWOULDBLOCK) {
        return Status::Error("another agent " + doing + " '" + guarded + "' (it holds '" + path +
                             "')");
      }
      return Status::Error("cannot lock '" + path + "': " + strerror(err));
    }
    if (!StillAt(fd, path)) {
      close(fd);  // a failed start discarded it between our open and flock: lock the new one
      continue;
    }
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
    path_ = path;
    created_ = created;
    return Status::Ok();
  }
  return Status::Error("cannot lock '" + path + "': it kept being removed while being locked");
}

void InstanceLock::Discard() {
  if (fd_ < 0) return;
  if (created_) unlink(path_.c_str());
  close(fd_);
  fd_ = -1;
  created_ = false;
}

}  // namespace gpufrac::node
