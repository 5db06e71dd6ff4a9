#include "serve/health_probe.h"

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <memory>

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;

class Probe : public std::enable_shared_from_this<Probe> {
 public:
  Probe(asio::io_context& io, uint16_t port, std::string path,
        std::function<void(bool, const std::string&)> done)
      : socket_(io), timer_(io), port_(port), path_(std::move(path)), done_(std::move(done)) {}

  void Run(int64_t timeout_ms) {
    timer_.expires_after(std::chrono::milliseconds(timeout_ms));
    timer_.async_wait([self = shared_from_this(), timeout_ms](const boost::system::error_code& ec) {
      if (!ec) self->End(false, "no answer within " + std::to_string(timeout_ms) + "ms");
    });
    socket_.async_connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port_),
                          [self = shared_from_this()](const boost::system::error_code& ec) {
                            if (ec) return self->End(false, "cannot connect: " + ec.message());
                            self->Send();
                          });
  }

 private:
  void Send() {
    request_ = "GET " + path_ + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
               "\r\nConnection: close\r\n\r\n";
    asio::async_write(socket_, asio::buffer(request_),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                        if (ec) return self->End(false, "send: " + ec.message());
                        self->Read();
                      });
  }

  void Read() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](
                                                    const boost::system::error_code& ec, size_t n) {
      if (ec) return self->End(false, "no status line: " + ec.message());
      self->response_.append(self->buf_.data(), n);
      const size_t eol = self->response_.find("\r\n");
      if (eol == std::string::npos) {
        if (self->response_.size() > 1024) return self->End(false, "malformed answer");
        return self->Read();
      }
      // "HTTP/1.1 200 OK"
      const std::string line = self->response_.substr(0, eol);
      const size_t sp = line.find(' ');
      const bool ok = sp != std::string::npos && line.compare(sp + 1, 1, "2") == 0;
      self->End(ok, ok ? "" : "answered " + line.substr(sp == std::string::npos ? 0 : sp + 1));
    });
  }

  void End(bool ok, const std::string& why) {
    if (!done_) return;
    auto done = std::move(done_);
    done_ = nullptr;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
    done(ok, why);
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  uint16_t port_;
  std::string path_, request_, response_;
  std::array<char, 1024> buf_;
  std::function<void(bool, const std::string&)> done_;
};

}  // namespace

void ProbeHealth(asio::io_context& io, uint16_t port, const std::string& path, int64_t timeout_ms,
                 std::function<void(bool healthy, const std::string& why)> done) {
  std::make_shared<Probe>(io, port, path, std::move(done))->Run(timeout_ms);
}

}  // namespace gpufrac::serve
