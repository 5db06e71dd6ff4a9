#include "support/unix_listener.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace gpufrac::testing {

UnixListener::UnixListener(int backlog) {
  char dir[] = "/tmp/gpufrac-peer-XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  dir_ = dir;
  path_ = dir_ + "/agent.sock";
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd_, backlog), 0);
}

void UnixListener::Shutdown() { shutdown(fd_, SHUT_RDWR); }

UnixListener::~UnixListener() {
  close(fd_);
  unlink(path_.c_str());
  rmdir(dir_.c_str());
}

}  // namespace gpufrac::testing
