#include "serve/client_session.h"

#include <boost/asio/write.hpp>

#include "serve/exchange.h"
#include "serve/gateway.h"

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;

constexpr size_t kMaxHeadBytes = 16 * 1024;
// A keep-alive connection with no request in progress is closed after this.
constexpr auto kIdleTimeout = std::chrono::minutes(5);
// After a refusal that leaves the client's bytes unread, how long they are read and dropped
// before the connection closes.
constexpr auto kLinger = std::chrono::seconds(2);

bool ExpectsContinue(const RequestHead& head) {
  if (head.http10) return false;  // RFC 9110 15.2: no 1xx to an HTTP/1.0 client
  std::string value = head.Header("expect");
  for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return value == "100-continue";
}

}  // namespace

ClientSession::ClientSession(Gateway& gateway, asio::ip::tcp::socket socket)
    : gateway_(gateway), socket_(std::move(socket)), timer_(gateway.io()) {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void ClientSession::Start() {
  ArmTimer();
  ReadMore();
}

void ClientSession::Close() {
  if (!open_) return;
  open_ = false;
  boost::system::error_code ec;
  timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  if (exchange_) {
    std::shared_ptr<Exchange> ex = std::move(exchange_);
    ex->Cancel();
  }
}

void ClientSession::ArmTimer() {
  // Idle: a long timeout. Part of a request read: the request timeout from now.
  const auto timeout = in_.empty()
                           ? std::chrono::duration_cast<std::chrono::milliseconds>(kIdleTimeout)
                           : std::chrono::milliseconds(gateway_.spec().gateway.request_timeout_ms);
  timer_.expires_after(timeout);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || !self->open_ || self->busy_) return;
    if (self->in_.empty()) {
      self->Close();
    } else {
      self->Reply(ErrorResponse(408, "request not received in time", false), true);
    }
  });
}

void ClientSession::ReadMore() {
  if (reading_ || !open_) return;
  // While a request is answered, read only to notice a disconnect; do not buffer without bound.
  if (busy_ && in_.size() > kMaxHeadBytes) return;
  reading_ = true;
  socket_.async_read_some(asio::buffer(buf_),
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                      size_t n) { self->OnRead(ec, n); });
}

void ClientSession::OnRead(const boost::system::error_code& ec, size_t n) {
  reading_ = false;
  if (!open_) return;
  if (ec) {
    Close();  // cancels a proxied request in flight
    return;
  }
  if (lingering_) {
    ReadMore();  // discarded until the client closes or the linger time ends
    return;
  }
  const bool was_empty = in_.empty();
  in_.append(buf_.data(), n);
  if (busy_) {
    ReadMore();
    return;
  }
  if (was_empty) ArmTimer();
  TryRequest();
}

void ClientSession::TryRequest() {
  if (busy_ || !open_) return;
  RequestHead head;
  std::string error;
  switch (ParseRequestHead(in_, kMaxHeadBytes, &head, &error)) {
    case HeadResult::kNeedMore:
      ReadMore();
      return;
    case HeadResult::kBad:
      Reply(ErrorResponse(400, "malformed HTTP request: " + error, false), true);
      return;
    case HeadResult::kTooLarge:
      Reply(ErrorResponse(431, "request headers larger than 16 KiB", false), true);
      return;
    case HeadResult::kChunked:
      Reply(ErrorResponse(411, "chunked request bodies are not supported; send Content-Length",
                          false),
            true);
      return;
    case HeadResult::kDone:
      break;
  }
  const uint64_t limit = gateway_.spec().gateway.max_body_bytes;
  if (head.content_length > limit) {
    // Refused before the body is read; the connection closes since the body is not consumed.
    Reply(ErrorResponse(413,
                        "request body of " + std::to_string(head.content_length) +
                            " bytes is over the limit of " + std::to_string(limit) + " bytes",
                        false),
          true);
    return;
  }
  if (in_.size() < head.head_bytes + head.content_length) {
    if (ExpectsContinue(head)) SendContinue();
    ReadMore();
    return;
  }
  std::string body = in_.substr(head.head_bytes, head.content_length);
  in_.erase(0, head.head_bytes + head.content_length);
  continue_sent_ = false;
  busy_ = true;
  keep_alive_ = head.keep_alive;
  http10_ = head.http10;
  timer_.cancel();
  ReadMore();  // to notice a client that goes away while it waits
  gateway_.Handle(shared_from_this(), std::move(head), std::move(body));
}

void ClientSession::Reply(std::string response, bool close) {
  exchange_.reset();
  busy_ = true;
  close = close || !keep_alive_;
  auto data = std::make_shared<std::string>(std::move(response));
  asio::async_write(
      socket_, asio::buffer(*data),
      [self = shared_from_this(), data, close](const boost::system::error_code& ec, size_t) {
        if (ec) {
          self->Close();
          return;
        }
        if (close) {
          // Bytes the client sent that were not read (a refused body) would make the kernel
          // answer the close with a reset, and the client could lose the reply: let it finish.
          if (self->in_.empty()) {
            self->Close();
          } else {
            self->LingerThenClose();
          }
          return;
        }
        self->busy_ = false;
        self->ArmTimer();
        self->TryRequest();
      });
}

void ClientSession::Write(const char* data, size_t size, std::shared_ptr<Exchange> exchange) {
  if (!open_) {
    exchange->OnClientWritten(false);
    return;
  }
  asio::async_write(socket_, asio::buffer(data, size),
                    [self = shared_from_this(), exchange = std::move(exchange)](
                        const boost::system::error_code& ec, size_t) {
                      const bool ok = !ec && self->open_;
                      exchange->OnClientWritten(ok);
                      // A session that had stopped reading would otherwise never notice.
                      if (!ok) self->Close();
                    });
}

void ClientSession::LingerThenClose() {
  lingering_ = true;
  in_.clear();
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);  // the client sees the end
  timer_.expires_after(kLinger);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->Close();
  });
  ReadMore();
}

void ClientSession::SendContinue() {
  if (continue_sent_) return;
  continue_sent_ = true;
  // The client waits for this before it sends the body; tiny, so written at once.
  boost::system::error_code ec;
  asio::write(socket_, asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), ec);
}

void ClientSession::ExchangeDone(bool close) {
  exchange_.reset();
  if (!open_) return;
  if (close || !keep_alive_) {
    Close();
    return;
  }
  busy_ = false;
  ArmTimer();
  TryRequest();
}

}  // namespace gpufrac::serve
