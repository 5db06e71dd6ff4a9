// One client request proxied to a replica. It waits in its model's queue (with a timeout) until
// the router gives it a replica, sends the request on a pooled or new connection, and streams the
// answer back byte for byte as each read completes: nothing is buffered beyond one read, and the
// next read starts only when the client has taken the last one. On the way it times the first
// content event (TTFT) and the gaps between content events (ITL). A replica that breaks the
// response gets the request retried elsewhere if nothing was sent to the client yet; otherwise
// the client gets an error event (SSE) or a closed connection, never a hang.
#pragma once

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>

#include "bench/http_parser.h"
#include "bench/sse_parser.h"
#include "serve/replica.h"
#include "serve/serve_metrics.h"

namespace gpufrac::serve {

class ClientSession;
class Gateway;

class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(Gateway& gateway, std::shared_ptr<ClientSession> client, std::shared_ptr<Model> model,
           std::string path, std::string forwarded_headers, std::string body, int64_t arrival_ns);

  // Waits in the queue: after timeout_ms the client gets `status` with Retry-After.
  void Enqueue(int64_t timeout_ms, int status);
  // Sends the request to `replica`.
  void Start(std::shared_ptr<Replica> replica);
  // Answers the client with an error now (admission refused, queue flushed).
  void Reject(int status, const std::string& message, ErrorKind kind, int retry_after_s);
  // The client went away: the upstream request is dropped (its connection closed).
  void Cancel();

  // The last bytes handed to ClientSession::Write are written (or the client is gone).
  void OnClientWritten(bool ok);

  bool done() const { return done_; }
  bool queued() const { return queued_; }
  int attempts() const { return attempts_; }
  int64_t arrival_ns() const { return arrival_ns_; }

 private:
  void Connect();
  void Send();
  void Read();
  void OnRead(const boost::system::error_code& ec, size_t n);
  void OnBody(std::string_view data);
  void Forward(const char* data, size_t size);
  // For an HTTP/1.0 client: forwards the body the parser decoded from this read's chunks.
  void ForwardDecoded();
  // Fails the attempt when the replica has sent nothing for the model's upstream_timeout (time
  // spent waiting for a slow client does not count).
  void WatchUpstream(int attempt, int64_t wait_ns);
  void UpstreamFailed(const std::string& why, bool replica_fault);
  // The client took nothing of a write for the gateway's client_write_timeout: it is dropped.
  void ClientStalled();
  void Finish(bool ok, bool close_client);
  void ReleaseReplica();
  // Whether the response is an event stream (known once its head is parsed).
  void CheckSse();
  // The replica has started answering (first content event, or the head of a response that is
  // not an event stream) or the request left it: it no longer counts in Replica::pending.
  void EndAwaiting();
  // A content event (or a whole embeddings answer) arrived at read_ns_: TTFT or ITL.
  void ObserveContent();

  Gateway& gateway_;
  std::shared_ptr<ClientSession> client_;
  std::shared_ptr<Model> model_;
  std::shared_ptr<Replica> replica_;
  std::string path_, forwarded_headers_, body_;
  int64_t arrival_ns_ = 0, dispatch_ns_ = 0;
  int64_t queued_ns_ = 0;            // when it last entered the model's queue
  boost::asio::steady_timer timer_;  // the queue timeout
  boost::asio::steady_timer watchdog_;
  std::unique_ptr<boost::asio::ip::tcp::socket> upstream_;
  bool reused_ = false;  // the connection came from the idle pool
  std::array<char, 16384> buf_;
  bench::HttpResponseParser parser_;
  bench::SseParser sse_;
  bool sse_checked_ = false, is_sse_ = false, chunked_ = false;
  // An HTTP/1.0 client gets a chunked answer de-chunked, and the close ends it (RFC 9112 7.1).
  bool dechunk_ = false;
  bool collect_decoded_ = false;       // until the head says whether the answer is chunked
  std::string decoded_;                // body bytes decoded since the last write to the client
  std::string decoded_out_;            // ... and those being written
  bool ended_between_chunks_ = false;  // the replica's connection ended right after a whole chunk
  bool ended_between_events_ = false;  // ... or right after a whole SSE event
  bool stream_ended_ = false;          // "[DONE]" or a finish_reason came
  bool closed_before_end_ = false;     // a close-delimited event stream ended without either
  bool leftover_ = false;              // bytes came after the response's end: not pooled
  bool stalled_ = false;               // dropped because the client took nothing
  bool head_sent_ = false;
  std::string pending_head_;  // the response head, until complete, then as sent
  std::string tail_;          // the error event that ends a stream whose replica failed
  bool writing_tail_ = false;
  bool waiting_client_ = false;
  uint64_t received_ = 0;
  int64_t read_ns_ = 0, first_content_ns_ = 0, last_content_ns_ = 0;
  int64_t quiet_since_ns_ = 0;    // the replica's last bytes, or the client's last taken write
  int64_t write_started_ns_ = 0;  // the write to the client now pending
  int content_events_ = 0;
  int attempts_ = 0;
  bool queued_ = false, done_ = false, holding_slot_ = false;
  bool awaiting_first_ = false;  // counted in replica_->pending
};

}  // namespace gpufrac::serve
