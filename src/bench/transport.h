// The event loop and the HTTP/1.1 client, with Boost.Asio hidden behind them (only transport.cc
// includes it). One thread runs the loop; every connection is a non-blocking socket on it, so
// thousands of streams cost no threads. Each read's completion time is taken first thing in the
// completion handler, before any parsing, and handed to the ResponseHandler with the bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench/http_parser.h"
#include "bench/record.h"
#include "common/status.h"

namespace gpufrac::bench {

class EventLoop {
 public:
  // busy_poll: Run() spins on non-blocking polls instead of sleeping in epoll_wait, so that bytes
  // are read (and timestamped) the moment they arrive, without a thread wake-up in between. It
  // costs a whole core for the length of the run.
  explicit EventLoop(bool busy_poll = false);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs fn at monotonic time at_ns (NowNs() clock), or soon if that has passed.
  void RunAt(int64_t at_ns, std::function<void()> fn);
  void Post(std::function<void()> fn);
  // Runs until Stop() is called (spinning when busy_poll was asked).
  void Run();
  void Stop();
  void* native();  // the asio::io_context, for transport.cc

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Target {
  std::string host = "127.0.0.1";
  uint16_t port = 80;
  std::string base_path;  // prefix before /v1/..., without a trailing slash
  std::string api_key;    // sent as "Authorization: Bearer <key>" when not empty
  bool tls = false;       // https
  std::string ca_file;    // PEM file of trusted CAs; empty: the system's
  bool insecure = false;  // TLS without certificate verification
};
// Parses "http[s]://host[:port][/prefix]".
Status ParseTargetUrl(std::string_view url, Target* target);

class ResponseHandler {
 public:
  virtual ~ResponseHandler() = default;
  // body_until_close: the response has neither a length nor chunks, so only the close ends it and
  // the framing cannot tell a whole body from one cut short.
  virtual void OnStatus(int status, bool body_until_close) = 0;
  // A piece of decoded body and the time its bytes came off the socket.
  virtual void OnBody(std::string_view data, int64_t received_ns) = 0;
  // The response ended (kind kNone) or failed. last_ns: time of the last bytes received (or of the
  // failure). The handler may be destroyed inside this call.
  virtual void OnComplete(ErrorKind kind, const std::string& message, int64_t last_ns) = 0;
};

class HttpClient {
 public:
  HttpClient(EventLoop& loop, Target target, int64_t timeout_ns);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends "POST <base_path><path>" with a JSON body; the answer goes to handler, which must stay
  // alive until its OnComplete. Reuses an idle keep-alive connection when there is one.
  // request_id goes out as "X-Gpufrac-Request-Id" so that a server's records can be matched with
  // ours. (Not "X-Request-Id": llama-cpp-python's server rejects a non-UUID one with 400.)
  void Post(std::string_view path, std::string body, uint64_t request_id, ResponseHandler* handler);
  // Ends every request in flight with kCancelled and closes every connection.
  void CancelAll();
  size_t in_flight() const;
  uint64_t connections_opened() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpufrac::bench
