// Test helper: a loopback HTTP server that answers every request with the same bytes, for the
// misbehaving servers the synthetic one does not imitate (a cut close-delimited stream, an error
// object sent with status 200, bytes after the response, text that is not UTF-8). Connections are
// served one after another on one thread, which is all a one-user client needs.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

namespace gpufrac::bench::testing {

class CannedServer {
 public:
  // close_after: close each connection after its answer (a close-delimited body needs it).
  CannedServer(std::string response, bool close_after)
      : response_(std::move(response)), close_after_(close_after) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 64) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~CannedServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  CannedServer(const CannedServer&) = delete;
  CannedServer& operator=(const CannedServer&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }
  int connections() const { return connections_; }

 private:
  // Waits up to 50 ms for fd to be readable; false when stopping or on timeout.
  bool Readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return !stop_ && poll(&p, 1, 50) > 0;
  }

  void AcceptLoop() {
    while (!stop_) {
      if (!Readable(listen_fd_)) continue;
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      Serve(fd);
      close(fd);
    }
  }

  // Reads requests (head, then a Content-Length body) and answers each with the canned bytes.
  void Serve(int fd) {
    std::string in;
    char buf[16384];
    while (!stop_) {
      size_t head_end = in.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t length = 0;
        size_t at = in.find("Content-Length: ");
        if (at != std::string::npos && at < head_end) length = std::stoul(in.substr(at + 16));
        if (in.size() >= head_end + 4 + length) {
          in.erase(0, head_end + 4 + length);
          ++requests_;
          if (send(fd, response_.data(), response_.size(), MSG_NOSIGNAL) < 0) return;
          if (close_after_) return;
          continue;
        }
      }
      if (!Readable(fd)) continue;
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
  }

  std::string response_;
  bool close_after_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0}, connections_{0};
  std::thread thread_;
};

}  // namespace gpufrac::bench::testing
