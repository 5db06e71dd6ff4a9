#include "bench/transport.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <charconv>
#include <chrono>
#include <unordered_set>

#include "bench/clock.h"

namespace gpufrac::bench {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr size_t kReadBufferBytes = 16 * 1024;

asio::steady_timer::time_point TimePointFromNs(int64_t ns) {
  // libstdc++'s steady_clock is CLOCK_MONOTONIC, the clock of NowNs().
  return asio::steady_timer::time_point(std::chrono::nanoseconds(ns));
}
}  // namespace

// ---- EventLoop ----

struct EventLoop::Impl {
  asio::io_context io{1};
  bool busy_poll = false;
};

EventLoop::EventLoop(bool busy_poll) : impl_(std::make_unique<Impl>()) {
  impl_->busy_poll = busy_poll;
}
EventLoop::~EventLoop() = default;

void EventLoop::RunAt(int64_t at_ns, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io, TimePointFromNs(at_ns));
  timer->async_wait([timer, fn = std::move(fn)](const boost::system::error_code& ec) {
    if (!ec) fn();
  });
}

void EventLoop::Post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

void EventLoop::Run() {
  auto guard = asio::make_work_guard(impl_->io);
  impl_->io.restart();
  if (!impl_->busy_poll) {
    impl_->io.run();
    return;
  }
  // Each poll() is one epoll_wait with a zero timeout plus the handlers it made ready; timers
  // still come through asio's timerfd, which becomes readable without waking anyone.
  while (!impl_->io.stopped()) impl_->io.poll();
}

void EventLoop::Stop() { impl_->io.stop(); }
void* EventLoop::native() { return &impl_->io; }

// ---- Target ----

Status ParseTargetUrl(std::string_view url, Target* target) {
  Target parsed;
  std::string_view rest = url;
  if (rest.substr(0, 8) == "https://") {
    parsed.tls = true;
    rest.remove_prefix(8);
  } else if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  } else {
    return Status::Error("URL must start with http:// or https://: '" + std::string(url) + "'");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    // Accept both http://h:p and http://h:p/v1 as the base.
    if (path.size() >= 3 && path.substr(path.size() - 3) == "/v1") path.remove_suffix(3);
    parsed.base_path = std::string(path);
  }
  // An IPv6 literal is bracketed ([::1]:8000): its colons are not the port's.
  std::string_view host_part = authority, port_part;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return Status::Error("unclosed '[' in URL '" + std::string(url) + "'");
    }
    host_part = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return Status::Error("bad port in URL '" + std::string(url) + "'");
    }
    has_port = !after.empty();
    if (has_port) port_part = after.substr(1);
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host_part = authority.substr(0, colon);
    port_part = authority.substr(colon + 1);
    has_port = true;
  }
  parsed.host = std::string(host_part);
  if (!has_port) {
    parsed.port = parsed.tls ? 443 : 80;
  } else {
    std::string_view port_text = port_part;
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return Status::Error("bad port in URL '" + std::string(url) + "'");
    }
    parsed.port = static_cast<uint16_t>(port);
  }
  if (parsed.host.empty()) return Status::Error("no host in URL '" + std::string(url) + "'");
  *target = std::move(parsed);
  return Status::Ok();
}

// ---- HttpClient ----

struct Connection {
  Connection(asio::io_context& io, asio::ssl::context& tls_context, bool use_tls)
      : stream(io, tls_context), tls(use_tls), deadline(io), in(kReadBufferBytes) {}
  tcp::socket& socket() { return stream.next_layer(); }
  // Reads and writes go through TLS or straight to the socket.
  template <typename Buffer, typename Handler>
  void AsyncWrite(const Buffer& buffer, Handler&& done) {
    if (tls) {
      asio::async_write(stream, buffer, std::forward<Handler>(done));
    } else {
      asio::async_write(socket(), buffer, std::forward<Handler>(done));
    }
  }
  template <typename Buffer, typename Handler>
  void AsyncReadSome(const Buffer& buffer, Handler&& done) {
    if (tls) {
      stream.async_read_some(buffer, std::forward<Handler>(done));
    } else {
      socket().async_read_some(buffer, std::forward<Handler>(done));
    }
  }

  asio::ssl::stream<tcp::socket> stream;  // its TLS layer is used only when tls is set
  bool tls;
  asio::steady_timer deadline;
  std::vector<char> in;
  std::string request;  // kept until the response ends, for a retry on a stale connection
  std::unique_ptr<HttpResponseParser> parser;
  ResponseHandler* handler = nullptr;
  uint64_t generation = 0;  // bumped when a request ends; stale completions compare and return
  bool connected = false;
  bool reused = false;
  bool got_bytes = false;
  bool status_sent = false;
  int64_t received_ns = 0;  // completion time of the read being parsed
};
using ConnectionPtr = std::shared_ptr<Connection>;

struct HttpClient::Impl {
  Impl(EventLoop& event_loop, Target t, int64_t timeout)
      : io(*static_cast<asio::io_context*>(event_loop.native())),
        target(std::move(t)),
        timeout_ns(timeout) {
    if (target.tls) {
      boost::system::error_code tls_error;
      if (target.insecure) {
        tls_context.set_verify_mode(asio::ssl::verify_none);
      } else {
        tls_context.set_verify_mode(asio::ssl::verify_peer);
        if (target.ca_file.empty()) {
          tls_context.set_default_verify_paths(tls_error);
        } else {
          tls_context.load_verify_file(target.ca_file, tls_error);
        }
      }
      // Reported with the first request, as a connect error naming the file.
      if (tls_error) resolve_error = "TLS set-up: " + tls_error.message();
    }
    boost::system::error_code ec;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(target.host, std::to_string(target.port), ec);
    if (resolve_error.empty() && !ec) endpoints.assign(results.begin(), results.end());
    if (ec) resolve_error = ec.message();
    const bool ipv6_literal = target.host.find(':') != std::string::npos;
    host_header =
        (ipv6_literal ? "[" + target.host + "]" : target.host) + ":" + std::to_string(target.port);
  }

  void Start(std::string request, ResponseHandler* handler) {
    ConnectionPtr conn;
    if (!idle.empty()) {
      conn = std::move(idle.back());
      idle.pop_back();
      conn->reused = true;
    } else {
      conn = std::make_shared<Connection>(io, tls_context, target.tls);
      conn->reused = false;
    }
    conn->request = std::move(request);
    conn->handler = handler;
    conn->got_bytes = false;
    conn->status_sent = false;
    ConnectionPtr raw = conn;
    conn->parser = std::make_unique<HttpResponseParser>([this, c = raw.get()](std::string_view d) {
      SendStatusOnce(c);
      c->handler->OnBody(d, c->received_ns);
    });
    active.insert(conn);
    uint64_t gen = conn->generation;
    if (timeout_ns > 0) {
      conn->deadline.expires_at(TimePointFromNs(NowNs() + timeout_ns));
      conn->deadline.async_wait([this, conn, gen](const boost::system::error_code& ec) {
        if (ec || conn->generation != gen) return;
        Finish(conn, ErrorKind::kTimeout, "request timed out", NowNs(), /*reusable=*/false);
      });
    }
    if (conn->connected) {
      WriteAndRead(conn);
      return;
    }
    if (endpoints.empty()) {
      // Posted, not finished here: a closed loop sends its next request from the completion, so
      // finishing inline would recurse once per request until the stack runs out.
      asio::post(io, [this, conn, gen] {
        if (conn->generation != gen) return;
        Finish(conn, ErrorKind::kConnect, "cannot connect to " + target.host + ": " + resolve_error,
               NowNs(), false);
      });
      return;
    }
    asio::async_connect(
        conn->socket(), endpoints,
        [this, conn, gen](const boost::system::error_code& ec, const tcp::endpoint&) {
          if (conn->generation != gen) return;
          if (ec) {
            Finish(conn, ErrorKind::kConnect, "connect: " + ec.message(), NowNs(), false);
            return;
          }
          ++opened;
          boost::system::error_code ignored;
          conn->socket().set_option(tcp::no_delay(true), ignored);
          if (conn->tls) {
            Handshake(conn, gen);
            return;
          }
          conn->connected = true;
          WriteAndRead(conn);
        });
  }

  void Handshake(const ConnectionPtr& conn, uint64_t gen) {
    // SNI, and the name the certificate must carry unless verification is off.
    SSL_set_tlsext_host_name(conn->stream.native_handle(), target.host.c_str());
    if (!target.insecure) {
      conn->stream.set_verify_callback(asio::ssl::host_name_verification(target.host));
    }
    conn->stream.async_handshake(
        asio::ssl::stream_base::client, [this, conn, gen](const boost::system::error_code& ec) {
          if (conn->generation != gen) return;
          if (ec) {
            Finish(conn, ErrorKind::kConnect, "TLS handshake: " + ec.message(), NowNs(), false);
            return;
          }
          conn->connected = true;
          WriteAndRead(conn);
        });
  }

  void WriteAndRead(const ConnectionPtr& conn) {
    uint64_t gen = conn->generation;
    conn->AsyncWrite(asio::buffer(conn->request),
                     [this, conn, gen](const boost::system::error_code& ec, size_t) {
                       if (conn->generation != gen || !ec) return;
                       OnTransportError(conn, ec);
                     });
    Read(conn);
  }

  void Read(const ConnectionPtr& conn) {
    uint64_t gen = conn->generation;
    conn->AsyncReadSome(
        asio::buffer(conn->in), [this, conn, gen](const boost::system::error_code& ec, size_t n) {
          const int64_t now = NowNs();  // before any parsing: this is the event's timestamp
          if (conn->generation != gen) return;
          if (ec) {
            // A TLS peer that closes without close_notify ends a close-delimited body too.
            bool closed = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
            if (closed && conn->parser->FeedEof()) {
              SendStatusOnce(conn.get());
              Finish(conn, ErrorKind::kNone, "", now, false);
              return;
            }
            OnTransportError(conn, ec);
            return;
          }
          conn->got_bytes = true;
          conn->received_ns = now;
          const size_t consumed_before = conn->parser->consumed();
          bool ok = conn->parser->Feed(std::string_view(conn->in.data(), n));
          if (conn->generation != gen) return;  // the handler cancelled everything
          if (!ok) {
            Finish(conn, ErrorKind::kProtocol, conn->parser->error(), now, false);
            return;
          }
          if (conn->parser->headers_done()) SendStatusOnce(conn.get());
          if (conn->parser->complete()) {
            // Bytes past the response's end belong to no request of ours; read as the start of
            // the next response they would shift every answer after it: not reused.
            const bool stray_bytes = conn->parser->consumed() < consumed_before + n;
            Finish(conn, ErrorKind::kNone, "", now, conn->parser->keep_alive() && !stray_bytes);
            return;
          }
          Read(conn);
        });
  }

  void SendStatusOnce(Connection* conn) {
    if (conn->status_sent || !conn->parser->headers_done()) return;
    conn->status_sent = true;
    conn->handler->OnStatus(conn->parser->status(), conn->parser->body_until_close());
  }

  void OnTransportError(const ConnectionPtr& conn, const boost::system::error_code& ec) {
    // A kept-alive connection the server has closed meanwhile: send again on a fresh one.
    if (conn->reused && !conn->got_bytes) {
      ResponseHandler* handler = conn->handler;
      std::string request = std::move(conn->request);
      Drop(conn);
      Start(std::move(request), handler);
      return;
    }
    Finish(conn, ErrorKind::kClosed, "connection: " + ec.message(), NowNs(), false);
  }

  void Drop(const ConnectionPtr& conn) {
    ++conn->generation;
    conn->handler = nullptr;
    boost::system::error_code ignored;
    conn->deadline.cancel();
    conn->socket().close(ignored);
    active.erase(conn);
  }

  void Finish(const ConnectionPtr& conn, ErrorKind kind, const std::string& message,
              int64_t last_ns, bool reusable) {
    ResponseHandler* handler = conn->handler;
    ++conn->generation;
    conn->handler = nullptr;
    conn->deadline.cancel();
    conn->request.clear();
    active.erase(conn);
    if (reusable && kind == ErrorKind::kNone) {
      idle.push_back(conn);
    } else {
      boost::system::error_code ignored;
      conn->socket().close(ignored);
      conn->connected = false;
    }
    if (handler != nullptr) handler->OnComplete(kind, message, last_ns);
  }

  asio::io_context& io;
  asio::ssl::context tls_context{asio::ssl::context::tls_client};
  Target target;
  int64_t timeout_ns;
  std::vector<tcp::endpoint> endpoints;
  std::string resolve_error;
  std::string host_header;
  std::unordered_set<ConnectionPtr> active;
  std::vector<ConnectionPtr> idle;
  uint64_t opened = 0;
};

HttpClient::HttpClient(EventLoop& loop, Target target, int64_t timeout_ns)
    : impl_(std::make_unique<Impl>(loop, std::move(target), timeout_ns)) {}

HttpClient::~HttpClient() {
  CancelAll();
  for (auto& conn : impl_->idle) {
    boost::system::error_code ignored;
    conn->socket().close(ignored);
  }
}

void HttpClient::Post(std::string_view path, std::string body, uint64_t request_id,
                      ResponseHandler* handler) {
  std::string request;
  request.reserve(body.size() + 256);
  request.append("POST ").append(impl_->target.base_path).append(path).append(" HTTP/1.1\r\n");
  request.append("Host: ").append(impl_->host_header).append("\r\n");
  request.append("Content-Type: application/json\r\nAccept: */*\r\n");
  request.append("X-Gpufrac-Request-Id: ").append(std::to_string(request_id)).append("\r\n");
  if (!impl_->target.api_key.empty()) {
    request.append("Authorization: Bearer ").append(impl_->target.api_key).append("\r\n");
  }
  request.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  request.append(body);
  impl_->Start(std::move(request), handler);
}

void HttpClient::CancelAll() {
  std::vector<ConnectionPtr> running(impl_->active.begin(), impl_->active.end());
  for (const ConnectionPtr& conn : running) {
    impl_->Finish(conn, ErrorKind::kCancelled, "cancelled at the end of the run", NowNs(), false);
  }
}

size_t HttpClient::in_flight() const { return impl_->active.size(); }
uint64_t HttpClient::connections_opened() const { return impl_->opened; }

}  // namespace gpufrac::bench
