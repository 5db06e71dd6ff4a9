// HttpCall: one blocking HTTP/1.1 exchange with the agent over its unix socket. Beast serializes
// the request and parses the answer; the socket is a plain descriptor with send/receive timeouts.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "node/http_server.h"

namespace gpufrac::node {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// Closes the descriptor on every way out.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() {
    if (fd_ >= 0) close(fd_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string Errno() { return std::strerror(errno); }

bool SendAll(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Status HttpCall(const std::string& socket_path, const std::string& method,
                const std::string& target, const std::string& body, int* status,
                std::string* response_body, uint32_t timeout_ms) {
  const std::string unreachable = "cannot reach the agent at '" + socket_path + "': ";
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    return Status::Error(unreachable + "socket path too long");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  const Descriptor fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::Error(unreachable + Errno());
  // Before connect: a blocking connect to an agent whose backlog is full waits this long too.
  timeval tv{static_cast<time_t>(timeout_ms / 1000),
             static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const std::string timed_out = "timed out after " + std::to_string(timeout_ms) + " ms";
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Error(unreachable + (errno == EAGAIN ? timed_out : Errno()));
  }

  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::connection, "close");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  std::ostringstream wire;
  wire << req;
  if (!SendAll(fd.get(), wire.str())) {
    return Status::Error("sending to the agent: " +
                         (errno == EAGAIN || errno == EWOULDBLOCK ? timed_out : Errno()));
  }

  http::response_parser<http::string_body> parser;
  parser.body_limit(256ull << 20);
  std::string pending;  // received, not yet taken by the parser
  char chunk[16384];
  beast::error_code ec;
  while (!parser.is_done()) {
    const ssize_t n = recv(fd.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::Error("reading the agent's answer: " +
                           (errno == EAGAIN || errno == EWOULDBLOCK ? timed_out : Errno()));
    }
    if (n == 0) {
      if (!parser.got_some() && pending.empty()) {
        return Status::Error("reading the agent's answer: end of stream");
      }
      parser.put_eof(ec);  // a body delimited by the close ends here; anything else is cut
      if (ec) return Status::Error("reading the agent's answer: " + ec.message());
      break;
    }
    pending.append(chunk, static_cast<size_t>(n));
    while (!pending.empty() && !parser.is_done()) {
      const size_t used = parser.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) return Status::Error("reading the agent's answer: " + ec.message());
      if (used == 0) break;
    }
  }
  *status = parser.get().result_int();
  *response_body = parser.get().body();
  return Status::Ok();
}

}  // namespace gpufrac::node
