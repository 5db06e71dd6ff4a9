#include "runtime/process_identity.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace gpufrac {
namespace {

struct StatFields {
  char state = '?';
  uint64_t start_time = 0;
};

// Reads the state (field 3) and start time (field 22) of /proc/PID/stat. The command name (field
// 2) may contain spaces and parentheses, so parsing starts after its last ')'.
bool ReadStat(pid_t pid, StatFields* fields) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  p += 2;  // ") "
  fields->state = *p;
  // Field 3 is the state; skip to field 22.
  for (int field = 3; field < 22; ++field) {
    p = strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  fields->start_time = strtoull(p, nullptr, 10);
  return true;
}

}  // namespace

uint64_t ProcessStartTime(pid_t pid) {
  StatFields fields;
  return ReadStat(pid, &fields) ? fields.start_time : 0;
}

bool ProcessIsAlive(pid_t pid, uint64_t start_time) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  StatFields fields;
  if (!ReadStat(pid, &fields)) {
    // kill() says it exists but /proc does not show it: hidden /proc, assume alive.
    return kill(pid, 0) == 0 || errno == EPERM;
  }
  if (fields.state == 'Z' || fields.state == 'X') return false;
  return start_time == 0 || fields.start_time == start_time;
}

}  // namespace gpufrac
