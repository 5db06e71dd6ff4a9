// The agent's HTTP/1.1 server on a unix socket, with Boost.Beast hidden behind it (only
// http_server.cc includes it). Requests arrive as plain structs; handlers return plain structs.
// Edge failures (malformed HTTP, a body over the limit, a client too slow to finish its request)
// are answered here, with the same JSON error body the API uses.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace gpufrac::node {

struct HttpRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', undecoded
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// The one place errors become JSON bodies: {"error": {"code": 404, "message": "..."}}.
HttpResponse JsonError(int status, const std::string& message);

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string socket_path;
  uint32_t socket_mode = 0660;
  int socket_gid = -1;  // the socket's group (operators allowed to call); -1: the agent's
  uint64_t max_body_bytes = 1 << 20;
  uint32_t request_timeout_ms = 10000;
  uint32_t threads = 4;
  // Optional TCP listener ("127.0.0.1:9400"); every request on it must carry
  // "Authorization: Bearer <tcp_token>" (401 otherwise).
  std::string tcp_address;
  std::string tcp_token;
};

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on the socket (replacing a stale one left by a dead agent, refusing one a
  // live agent answers on) and the TCP address, if any. Nothing is accepted yet: clients that
  // connect wait in the backlog until Serve. Split from Serve so that the agent can claim the
  // socket before it adopts tenants, and so that a start that fails here has touched nothing: a
  // failure (a path longer than kMaxSocketPathBytes included) is a Status, never an exception,
  // and leaves neither the socket nor the lock file it created.
  Status Listen(const HttpServerOptions& options);
  // Starts answering on `threads` threads.
  void Serve(HttpHandler handler);
  // Listen, then Serve.
  Status Start(const HttpServerOptions& options, HttpHandler handler);
  // Blocks until SIGINT or SIGTERM, then stops serving.
  void WaitForSignal();
  void Stop();
  // For a start that failed (Listen does it itself when it fails): stops, removes the socket file
  // if this server bound it and the lock file if this server created it. A server that stops
  // after serving keeps its lock file, like any agent that ran.
  void Abandon();

 private:
  Status ListenOrFail(const HttpServerOptions& options);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True for "http://IP:PORT/PATH" (an IPv4/IPv6 literal or localhost; no TLS).
bool ValidHookUrl(const std::string& url);
// POSTs a JSON body to such a URL with a deadline; *status gets the HTTP status.
Status HttpPostUrl(const std::string& url, const std::string& body, uint32_t timeout_ms,
                   int* status);

// A blocking client call over a unix socket, for the CLI, gpufrac serve's worker threads and tests
// (http_call.cc). Plain POSIX calls: one descriptor, no event loop, and nothing thrown when the
// process is out of descriptors (an error Status instead).
Status HttpCall(const std::string& socket_path, const std::string& method,
                const std::string& target, const std::string& body, int* status,
                std::string* response_body, uint32_t timeout_ms = 30000);

}  // namespace gpufrac::node
