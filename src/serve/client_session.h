// One client connection to the gateway: reads requests one at a time (HTTP/1.1 keep-alive),
// answers the gateway's own routes, and while a request is proxied keeps reading so that a client
// that goes away cancels its upstream request at once.
#pragma once

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>

#include "serve/http_head.h"

namespace gpufrac::serve {

class Exchange;
class Gateway;

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  ClientSession(Gateway& gateway, boost::asio::ip::tcp::socket socket);
  void Start();
  void Close();

  // A whole response from the gateway itself; then the next request (or close).
  void Reply(std::string response, bool close);
  // Bytes of a proxied response, owned by `exchange` until it is told they are written
  // (Exchange::OnClientWritten; false: the client is gone). No copy, no allocation per write.
  void Write(const char* data, size_t size, std::shared_ptr<Exchange> exchange);
  // The proxied request is over.
  void AttachExchange(std::shared_ptr<Exchange> exchange) { exchange_ = std::move(exchange); }
  void ExchangeDone(bool close);
  bool open() const { return open_; }
  // The request being answered came over HTTP/1.0: its response cannot be chunked.
  bool http10() const { return http10_; }

 private:
  void ReadMore();
  void OnRead(const boost::system::error_code& ec, size_t n);
  void TryRequest();
  void ArmTimer();
  // Stops sending, reads and drops what the client still sends, then closes.
  void LingerThenClose();
  // "Expect: 100-continue": the client waits for this before sending the body.
  void SendContinue();

  Gateway& gateway_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer timer_;
  std::array<char, 16384> buf_;
  std::string in_;
  std::shared_ptr<Exchange> exchange_;
  bool open_ = true;
  bool reading_ = false;
  bool busy_ = false;  // a request is being answered; the next waits in in_
  bool keep_alive_ = true;
  bool http10_ = false;
  bool continue_sent_ = false;  // for the request being read
  bool lingering_ = false;
};

}  // namespace gpufrac::serve
