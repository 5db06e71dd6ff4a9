// (node/http_server.h comes first: Boost 1.74's asio uses std::exchange without including
// <utility>, which that header brings.)
#include "node/http_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "node/config.h"
#include "node/instance_lock.h"

namespace gpufrac::node {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;

constexpr uint32_t kHeaderLimit = 16 * 1024;
// After refusing a request we still read (and drop) what the client sends for this long, so that
// it sees our answer instead of a reset connection.
constexpr auto kDrainTime = std::chrono::seconds(2);

void CloseOnExec(int fd) { fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC); }

// One connection, on a unix socket or (with a bearer token) TCP.
template <class Protocol>
class Session : public std::enable_shared_from_this<Session<Protocol>> {
  using Socket = typename Protocol::socket;
  using std::enable_shared_from_this<Session<Protocol>>::shared_from_this;

 public:
  Session(Socket socket, const HttpServerOptions& options, const HttpHandler& handler, bool remote)
      : socket_(std::move(socket)),
        remote_(remote),
        timer_(socket_.get_executor()),
        options_(options),
        handler_(handler) {}

  void Start() {
    CloseOnExec(socket_.native_handle());
    ReadRequest();
  }

 private:
  // Cancels the socket's pending operation when the deadline passes.
  void Arm(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      self->socket_.cancel(ignored);
    });
  }

  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(options_.max_body_bytes);
    parser_->header_limit(kHeaderLimit);
    Arm(std::chrono::milliseconds(options_.request_timeout_ms));
    http::async_read(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    timer_.cancel();
    if (timed_out_) {
      // An idle kept-alive connection just closes; a half-sent request gets told why.
      if (parser_->got_some()) {
        Fail(JsonError(408, "request not completely received within " +
                                std::to_string(options_.request_timeout_ms) + " ms"));
      } else {
        Close();
      }
      return;
    }
    if (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
        ec == asio::error::eof) {
      Close();
      return;
    }
    if (ec == http::error::body_limit) {
      Fail(JsonError(413,
                     "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes"));
      return;
    }
    if (ec == http::error::header_limit) {
      Fail(JsonError(431, "request headers exceed " + std::to_string(kHeaderLimit) + " bytes"));
      return;
    }
    if (ec) {
      Fail(JsonError(400, "malformed HTTP request: " + ec.message()));
      return;
    }
    const auto& req = parser_->get();
    HttpRequest request;
    request.method = std::string(req.method_string());
    const std::string target(req.target());
    const size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    request.body = req.body();
    HttpResponse response;
    if (remote_ && !Authorized(std::string(req[http::field::authorization]))) {
      response = JsonError(401, "missing or wrong bearer token");
    } else {
      try {
        response = handler_(request);
      } catch (const std::exception& e) {
        response = JsonError(500, std::string("internal error: ") + e.what());
      }
    }
    Write(response, req.keep_alive(), false);
  }

  // Compares in time independent of where the first difference is.
  bool Authorized(const std::string& header) const {
    const std::string expected = "Bearer " + options_.tcp_token;
    if (options_.tcp_token.empty() || header.size() != expected.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < header.size(); ++i) {
      diff |= static_cast<unsigned char>(header[i] ^ expected[i]);
    }
    return diff == 0;
  }

  void Fail(const HttpResponse& response) { Write(response, false, true); }

  void Write(const HttpResponse& response, bool keep_alive, bool drain) {
    res_ = {};
    res_.result(static_cast<http::status>(response.status));
    res_.version(11);
    res_.set(http::field::server, "gpufrac-node");
    res_.set(http::field::content_type, response.content_type);
    res_.keep_alive(keep_alive);
    res_.body() = response.body;
    res_.prepare_payload();
    Arm(std::chrono::milliseconds(options_.request_timeout_ms));
    http::async_write(
        socket_, res_,
        [self = shared_from_this(), keep_alive, drain](beast::error_code ec, size_t) {
          self->timer_.cancel();
          if (!ec && keep_alive) {
            self->ReadRequest();
          } else if (!ec && drain) {
            beast::error_code ignored;
            self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
            self->Arm(std::chrono::duration_cast<std::chrono::milliseconds>(kDrainTime));
            self->Drain();
          } else {
            self->Close();
          }
        });
  }

  void Drain() {
    socket_.async_read_some(asio::buffer(drain_buf_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) {
                                self->timer_.cancel();
                                self->Close();
                                return;
                              }
                              self->Drain();
                            });
  }

  void Close() {
    beast::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
  }

  Socket socket_;
  const bool remote_;  // TCP: the bearer token is required
  asio::steady_timer timer_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  char drain_buf_[65536];
  bool timed_out_ = false;
};

// True when something answers on the socket: another agent is alive there.
bool SocketIsLive(const std::string& path) {
  asio::io_context ioc;
  Local::socket s(ioc);
  beast::error_code ec;
  s.connect(Local::endpoint(path), ec);
  return !ec;
}

Status ListenTcp(const HttpServerOptions& options, asio::io_context* ioc,
                 std::optional<asio::ip::tcp::acceptor>* out) {
  const std::string& address = options.tcp_address;
  const size_t colon = address.rfind(':');
  beast::error_code ec;
  const auto ip = asio::ip::make_address(address.substr(0, colon), ec);
  // The config checked it; checked again without std::stoul, which throws on a bad port.
  uint16_t port = 0;
  const char* port_end = address.data() + address.size();
  const auto [end, perr] = colon == std::string::npos
                               ? std::from_chars_result{address.data(), std::errc::invalid_argument}
                               : std::from_chars(address.data() + colon + 1, port_end, port);
  if (colon == std::string::npos || ec || perr != std::errc() || end != port_end || port == 0) {
    return Status::Error("tcp address '" + address + "' is not IP:PORT");
  }
  const asio::ip::tcp::endpoint endpoint(ip, port);
  out->emplace(*ioc);
  (*out)->open(endpoint.protocol(), ec);
  if (!ec) CloseOnExec((*out)->native_handle());
  if (!ec) (*out)->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) (*out)->bind(endpoint, ec);
  if (!ec) (*out)->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Error("cannot listen on " + address + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

HttpResponse JsonError(int status, const std::string& message) {
  nlohmann::json body = {{"error", {{"code", status}, {"message", message}}}};
  return HttpResponse{status, "application/json", body.dump() + "\n"};
}

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  asio::io_context ioc;
  std::optional<Local::acceptor> acceptor;
  std::optional<asio::ip::tcp::acceptor> tcp_acceptor;
  std::optional<asio::signal_set> signals;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::condition_variable cv;
  InstanceLock socket_lock;
  bool bound = false;  // the socket file is ours: Stop removes it
  bool signalled = false;
  bool stopped = false;

  void Accept() {
    acceptor->async_accept(
        asio::make_strand(ioc), [this](beast::error_code ec, Local::socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (!ec) {
            std::make_shared<Session<Local>>(std::move(socket), options, handler, false)->Start();
          }
          Accept();
        });
  }

  void AcceptTcp() {
    tcp_acceptor->async_accept(
        asio::make_strand(ioc), [this](beast::error_code ec, asio::ip::tcp::socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (!ec) {
            std::make_shared<Session<asio::ip::tcp>>(std::move(socket), options, handler, true)
                ->Start();
          }
          AcceptTcp();
        });
  }
};

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Listen(const HttpServerOptions& options) {
  const std::string& path = options.socket_path;
  // Checked before the lock file is created: a path the kernel cannot bind leaves nothing behind.
  if (path.size() > kMaxSocketPathBytes) {
    return Status::Error("socket path '" + path + "' is " + std::to_string(path.size()) +
                         " bytes, longer than the " + std::to_string(kMaxSocketPathBytes) +
                         " a unix socket's path may have");
  }
  Status result;
  try {
    result = ListenOrFail(options);
  } catch (const std::exception& e) {
    // Asio throws where it has no error_code overload (an endpoint it cannot build); a failed
    // start must still end in one line, not an abort.
    result = Status::Error("cannot listen on '" + path + "': " + e.what());
  }
  if (!result.ok()) Abandon();
  return result;
}

Status HttpServer::ListenOrFail(const HttpServerOptions& options) {
  Impl& s = *impl_;
  s.options = options;
  const std::string& path = options.socket_path;
  // Held from before the stale-socket check: two agents starting at once could otherwise both
  // find a dead agent's socket, and the second would unlink the first one's fresh socket.
  if (Status e = s.socket_lock.Acquire(path, "is serving on"); !e.ok()) return e;
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir(path.substr(0, slash).c_str(), 0755);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::Error("'" + path + "' exists and is not a socket");
    if (SocketIsLive(path)) return Status::Error("another agent is serving on '" + path + "'");
    unlink(path.c_str());  // left by an agent that died
  }
  beast::error_code ec;
  s.acceptor.emplace(s.ioc);
  s.acceptor->open(Local(), ec);
  if (!ec) CloseOnExec(s.acceptor->native_handle());
  if (!ec) s.acceptor->bind(Local::endpoint(path), ec);
  if (ec) return Status::Error("cannot bind '" + path + "': " + ec.message());
  s.bound = true;
  // Before listen, so that nobody connects while the mode and group are still the defaults.
  if (options.socket_gid >= 0 &&
      chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(options.socket_gid)) != 0) {
    return Status::Error("cannot give '" + path + "' to group " +
                         std::to_string(options.socket_gid) + ": " + strerror(errno));
  }
  if (chmod(path.c_str(), options.socket_mode) != 0) {
    return Status::Error("cannot set the mode of '" + path + "'");
  }
  s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Error("cannot listen on '" + path + "': " + ec.message());
  if (!options.tcp_address.empty()) {
    if (Status e = ListenTcp(options, &s.ioc, &s.tcp_acceptor); !e.ok()) return e;
  }
  return Status::Ok();
}

void HttpServer::Serve(HttpHandler handler) {
  Impl& s = *impl_;
  s.handler = std::move(handler);
  if (s.tcp_acceptor) s.AcceptTcp();
  s.signals.emplace(s.ioc, SIGINT, SIGTERM);
  s.signals->async_wait([&s](beast::error_code e, int) {
    if (e) return;
    std::lock_guard lock(s.mu);
    s.signalled = true;
    s.cv.notify_all();
  });
  s.Accept();
  for (uint32_t i = 0; i < std::max(1u, s.options.threads); ++i) {
    s.threads.emplace_back([&s] { s.ioc.run(); });
  }
}

Status HttpServer::Start(const HttpServerOptions& options, HttpHandler handler) {
  if (Status s = Listen(options); !s.ok()) return s;
  Serve(std::move(handler));
  return Status::Ok();
}

void HttpServer::WaitForSignal() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return impl_->signalled; });
}

void HttpServer::Stop() {
  Impl& s = *impl_;
  if (s.stopped || !s.bound) return;  // nothing bound: the path may be another agent's socket
  s.stopped = true;
  s.ioc.stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
  beast::error_code ignored;
  if (s.acceptor) s.acceptor->close(ignored);
  if (s.tcp_acceptor) s.tcp_acceptor->close(ignored);
  if (s.signals) s.signals->cancel(ignored);
  unlink(s.options.socket_path.c_str());
}

void HttpServer::Abandon() {
  Impl& s = *impl_;
  Stop();
  beast::error_code ignored;
  if (s.acceptor) s.acceptor->close(ignored);
  if (s.tcp_acceptor) s.tcp_acceptor->close(ignored);
  s.socket_lock.Discard();
}

}  // namespace gpufrac::node

namespace gpufrac::node {
namespace {

struct HookUrl {
  std::string host;
  uint16_t port = 0;
  std::string target;
};

bool ParseHookUrl(const std::string& url, HookUrl* out) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) return false;
  const size_t slash = url.find('/', scheme.size());
  const std::string authority =
      url.substr(scheme.size(), slash == std::string::npos ? slash : slash - scheme.size());
  out->target = slash == std::string::npos ? "/" : url.substr(slash);
  const size_t colon = authority.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  std::string host = authority.substr(0, colon);
  const std::string port = authority.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  const unsigned long p = std::stoul(port);
  if (p == 0 || p > 65535) return false;
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  if (ec) return false;
  out->host = host;
  out->port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace

bool ValidHookUrl(const std::string& url) {
  HookUrl parsed;
  return ParseHookUrl(url, &parsed);
}

Status HttpPostUrl(const std::string& url, const std::string& body, uint32_t timeout_ms,
                   int* status) {
  HookUrl u;
  if (!ParseHookUrl(url, &u)) return Status::Error("bad hook URL '" + url + "'");
  asio::io_context ioc;
  beast::basic_stream<asio::ip::tcp> stream(ioc);
  stream.expires_after(std::chrono::milliseconds(timeout_ms));
  beast::error_code result = asio::error::timed_out;
  http::request<http::string_body> req{http::verb::post, u.target, 11};
  req.set(http::field::host, u.host);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "close");
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(u.host), u.port);
  stream.async_connect(endpoint, [&](beast::error_code ec) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_write(stream, req, [&](beast::error_code wec, size_t) {
      if (wec) {
        result = wec;
        return;
      }
      http::async_read(stream, buffer, res, [&](beast::error_code rec, size_t) { result = rec; });
    });
  });
  ioc.run();
  if (result) return Status::Error("hook " + url + ": " + result.message());
  *status = res.result_int();
  return Status::Ok();
}

}  // namespace gpufrac::node
