// A listening unix socket in a fresh temporary directory, for tests that play a peer (a fake node
// agent): bound at construction; the socket and its directory are removed at destruction.
#pragma once

#include <string>

namespace gpufrac::testing {

class UnixListener {
 public:
  explicit UnixListener(int backlog = 16);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  // Makes a blocked accept() return -1 (so a serving thread can end), before it is joined.
  void Shutdown();

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

}  // namespace gpufrac::testing
