#include "serve/exchange.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "bench/clock.h"
#include "serve/client_session.h"
#include "serve/content_scan.h"
#include "serve/gateway.h"
#include "serve/serve_log.h"

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;
using bench::NowNs;

// Attempts per request: the first, and retries on another replica while nothing was sent back.
constexpr int kMaxAttempts = 3;

double Seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Exchange::Exchange(Gateway& gateway, std::shared_ptr<ClientSession> client,
                   std::shared_ptr<Model> model, std::string path, std::string forwarded_headers,
                   std::string body, int64_t arrival_ns)
    : gateway_(gateway),
      client_(std::move(client)),
      model_(std::move(model)),
      path_(std::move(path)),
      forwarded_headers_(std::move(forwarded_headers)),
      body_(std::move(body)),
      arrival_ns_(arrival_ns),
      timer_(gateway.io()),
      watchdog_(gateway.io()),
      parser_([this](std::string_view d) { OnBody(d); }),
      sse_([this](const bench::SseEvent& e) {
        if (HasContent(e.data)) ObserveContent();
        if (EndsStream(e.data)) stream_ended_ = true;
      }) {}

void Exchange::ObserveContent() {
  ModelMetrics& m = model_->metrics;
  if (first_content_ns_ == 0) {
    first_content_ns_ = read_ns_;
    m.ttft.Observe(Seconds(read_ns_ - arrival_ns_));
    // The autoscaler's window: only requests that arrived since the last change in capacity
    // describe it. One held through a cold start waited for capacity that now exists.
    if (arrival_ns_ >= model_->window_start_ns) {
      m.ttft_window.Add(read_ns_, static_cast<double>(read_ns_ - arrival_ns_) / 1e6);
    }
    replica_->metrics.ttft.Observe(Seconds(read_ns_ - arrival_ns_));
    EndAwaiting();
  } else {
    m.itl.Observe(Seconds(read_ns_ - last_content_ns_));
    replica_->metrics.itl.Observe(Seconds(read_ns_ - last_content_ns_));
  }
  last_content_ns_ = read_ns_;
  ++content_events_;
}

void Exchange::Enqueue(int64_t timeout_ms, int status) {
  queued_ = true;
  queued_ns_ = NowNs();
  timer_.expires_after(std::chrono::milliseconds(timeout_ms));
  timer_.async_wait(
      [self = shared_from_this(), timeout_ms, status](const boost::system::error_code& ec) {
        if (ec || !self->queued_ || self->done_) return;
        self->Reject(status,
                     "model '" + self->model_->spec.name +
                         "': no replica could take the request within " +
                         std::to_string(timeout_ms) + "ms; retry later",
                     ErrorKind::kQueueTimeout, 1);
      });
}

void Exchange::Reject(int status, const std::string& message, ErrorKind kind, int retry_after_s) {
  if (done_) return;
  done_ = true;
  queued_ = false;
  timer_.cancel();
  ++model_->metrics.errors[kind];
  ++model_->metrics.responses_by_code[status];
  client_->Reply(ErrorResponse(status, message, true, retry_after_s), false);
}

void Exchange::Start(std::shared_ptr<Replica> replica) {
  if (queued_ || attempts_ == 0) {
    const int64_t waited = NowNs() - arrival_ns_;
    if (attempts_ == 0) {
      model_->metrics.queue_wait.Observe(Seconds(waited));
      model_->metrics.queue_wait_window.Add(NowNs(), static_cast<double>(waited) / 1e6);
    }
  }
  const int64_t queue_wait = queued_ ? NowNs() - queued_ns_ : 0;
  queued_ = false;
  timer_.cancel();
  replica_ = std::move(replica);
  ++replica_->outstanding;
  ++replica_->pending;
  awaiting_first_ = true;
  ++replica_->metrics.requests;
  replica_->metrics.queue_wait.Observe(Seconds(queue_wait));
  ++model_->in_flight;
  holding_slot_ = true;
  ++attempts_;
  dispatch_ns_ = read_ns_ = quiet_since_ns_ = NowNs();
  WatchUpstream(attempts_, std::min(model_->spec.upstream_timeout_ms,
                                    gateway_.spec().gateway.client_write_timeout_ms) *
                               1'000'000);
  parser_ = bench::HttpResponseParser([this](std::string_view d) { OnBody(d); });
  sse_checked_ = is_sse_ = chunked_ = ended_between_chunks_ = dechunk_ = false;
  collect_decoded_ = client_->http10();
  decoded_.clear();
  ended_between_events_ = stream_ended_ = closed_before_end_ = leftover_ = false;
  received_ = 0;
  pending_head_.clear();
  if (!replica_->idle.empty()) {
    upstream_ = std::move(replica_->idle.back());
    replica_->idle.pop_back();
    reused_ = true;
    Send();
    return;
  }
  reused_ = false;
  Connect();
}

void Exchange::Connect() {
  upstream_ = std::make_unique<asio::ip::tcp::socket>(gateway_.io());
  const asio::ip::tcp::endpoint endpoint(asio::ip::address_v4::loopback(), replica_->port);
  upstream_->async_connect(endpoint,
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                             if (self->done_) return;
                             if (ec) {
                               ++self->model_->metrics.errors[ErrorKind::kUpstreamConnect];
                               self->UpstreamFailed("cannot connect: " + ec.message(), true);
                               return;
                             }
                             boost::system::error_code ignored;
                             self->upstream_->set_option(asio::ip::tcp::no_delay(true), ignored);
                             self->Send();
                           });
}

void Exchange::Send() {
  auto request = std::make_shared<std::string>();
  *request =
      "POST " + path_ + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(replica_->port) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body_.size()) +
      "\r\n" + forwarded_headers_ + "\r\n" + body_;
  asio::async_write(
      *upstream_, asio::buffer(*request),
      [self = shared_from_this(), request](const boost::system::error_code& ec, size_t) {
        if (self->done_) return;
        if (ec) {
          self->UpstreamFailed("send: " + ec.message(), !self->reused_);
          return;
        }
        self->Read();
      });
}

void Exchange::Read() {
  upstream_->async_read_some(asio::buffer(buf_),
                             [self = shared_from_this()](const boost::system::error_code& ec,
                                                         size_t n) { self->OnRead(ec, n); });
}

void Exchange::OnRead(const boost::system::error_code& ec, size_t n) {
  if (done_) return;
  read_ns_ = NowNs();
  if (ec) {
    // Where the stream stood when the replica went away (FeedEof below marks a cut body failed).
    ended_between_chunks_ = parser_.between_chunks();
    ended_between_events_ = sse_.between_events();
    // Only the close frames such a body, so a replica that died between two events would look
    // like one that finished: without "[DONE]" or a finish_reason it did not.
    const bool unframed_stream = parser_.body_until_close() && is_sse_;
    if (ec == asio::error::eof && parser_.FeedEof() && parser_.complete()) {
      if (unframed_stream) sse_.Finish();  // a last event ended by a single newline still counts
      if (!unframed_stream || stream_ended_) {
        Finish(true, true);  // a close-delimited body ended
        return;
      }
    }
    if (unframed_stream && stream_ended_) {
      Finish(true, true);  // reset after its last event: the client has the whole stream
      return;
    }
    closed_before_end_ = unframed_stream;
    // A pooled connection the replica closed before answering is not the replica's fault.
    const bool replica_fault = !(reused_ && received_ == 0);
    UpstreamFailed(closed_before_end_       ? "the replica closed the stream before its end"
                   : ec == asio::error::eof ? "the replica closed the connection mid-response"
                                            : "read: " + ec.message(),
                   replica_fault);
    return;
  }
  received_ += n;
  quiet_since_ns_ = read_ns_;
  if (!parser_.Feed(std::string_view(buf_.data(), n))) {
    UpstreamFailed("malformed response: " + parser_.error(), true);
    return;
  }
  size_t use = n;
  if (parser_.complete() && parser_.consumed() < received_) {
    // Bytes after the end of the response are not the client's, and they would be read as the
    // start of the next answer on this connection: it is not pooled.
    leftover_ = true;
    use = n - static_cast<size_t>(received_ - parser_.consumed());
  }
  if (head_sent_) {
    if (dechunk_) {
      ForwardDecoded();
    } else {
      Forward(buf_.data(), use);  // buf_ is not read into again before the write completes
    }
    return;
  }
  pending_head_.append(buf_.data(), use);
  if (!parser_.headers_done()) {
    Read();
    return;
  }
  // Interim responses (103 Early Hints) and stray blank lines before the final head are dropped.
  pending_head_.erase(0, parser_.head_start());
  for (const bench::HttpHeader& h : parser_.headers()) {
    if (h.name == "transfer-encoding" && Lower(h.value).find("chunked") != std::string::npos) {
      chunked_ = true;
    }
  }
  dechunk_ = chunked_ && collect_decoded_;
  collect_decoded_ = dechunk_;
  if (dechunk_) {
    // The head without its framing, then the body decoded so far in place of the raw chunks.
    pending_head_ = CloseDelimitedHead(pending_head_) + decoded_;
  }
  decoded_.clear();
  // Tell the client which replica answered, right after the status line (whatever ends it).
  const size_t eol = pending_head_.find('\n');
  pending_head_.insert(eol + 1, "X-Gpufrac-Replica: " + replica_->tenant + "\r\n");
  CheckSse();
  // A whole response is ready when its head comes. For embeddings that is their time to first
  // token (as GenAI-Perf counts it) and what an embedding model's SLA is held to. A non-streamed
  // chat or completion answer is a whole generation: counted as TTFT it would make a chat model
  // look in breach of its SLA, so only its latency is recorded. Error statuses are not answers.
  if (!is_sse_) {
    if (parser_.status() < 400 && path_ == "/v1/embeddings") ObserveContent();
    EndAwaiting();
  }
  if (parser_.status() >= 500) {
    ++model_->metrics.errors[ErrorKind::kUpstreamStatus];
    ++replica_->metrics.errors;
  }
  head_sent_ = true;
  Forward(pending_head_.data(), pending_head_.size());
}

void Exchange::CheckSse() {
  if (sse_checked_) return;
  sse_checked_ = true;
  for (const bench::HttpHeader& h : parser_.headers()) {
    if (h.name == "content-type" && Lower(h.value).find("text/event-stream") != std::string::npos) {
      is_sse_ = true;
    }
  }
}

// Runs inside parser_.Feed, which may reach the body before OnRead sees the head complete.
void Exchange::OnBody(std::string_view data) {
  CheckSse();
  if (is_sse_) sse_.Feed(data);
  if (collect_decoded_) decoded_.append(data);
}

void Exchange::ForwardDecoded() {
  decoded_out_.swap(decoded_);  // decoded_ is not fed again before this write completes
  decoded_.clear();
  if (decoded_out_.empty()) {
    OnClientWritten(true);  // the read held only chunk framing: nothing to send
    return;
  }
  Forward(decoded_out_.data(), decoded_out_.size());
}

void Exchange::Forward(const char* data, size_t size) {
  waiting_client_ = true;
  write_started_ns_ = NowNs();
  client_->Write(data, size, shared_from_this());
}

void Exchange::WatchUpstream(int attempt, int64_t wait_ns) {
  watchdog_.expires_after(std::chrono::nanoseconds(wait_ns));
  watchdog_.async_wait([self = shared_from_this(), attempt](const boost::system::error_code& ec) {
    if (ec || self->done_ || self->attempts_ != attempt) return;
    const int64_t now = NowNs();
    const int64_t upstream_timeout = self->model_->spec.upstream_timeout_ms * 1'000'000;
    const int64_t client_timeout =
        self->gateway_.spec().gateway.client_write_timeout_ms * 1'000'000;
    if (self->waiting_client_) {
      // The replica waits for us; the client has this long to take what was sent.
      const int64_t stuck = now - self->write_started_ns_;
      if (stuck >= client_timeout) {
        self->ClientStalled();
        return;
      }
      self->WatchUpstream(attempt, std::min(upstream_timeout, client_timeout - stuck));
      return;
    }
    const int64_t quiet = now - self->quiet_since_ns_;
    if (quiet < upstream_timeout) {
      self->WatchUpstream(attempt, std::min(upstream_timeout - quiet, client_timeout));
      return;
    }
    self->UpstreamFailed(
        "sent nothing for " + std::to_string(self->model_->spec.upstream_timeout_ms) + "ms", true);
  });
}

void Exchange::ClientStalled() {
  LogEvent(
      "request.client_stalled",
      {{"model", model_->spec.name},
       {"replica", replica_ ? replica_->tenant : ""},
       {"reason", "the client took nothing for " +
                      std::to_string(gateway_.spec().gateway.client_write_timeout_ms) + "ms"}});
  stalled_ = true;
  client_->Close();
  Cancel();  // the replica sees the request dropped
}

void Exchange::OnClientWritten(bool ok) {
  waiting_client_ = false;
  quiet_since_ns_ = NowNs();  // the time the client took is not the replica's silence
  if (writing_tail_) {
    writing_tail_ = false;
    gateway_.Dispatch(*model_);
    // Only the close ends a stream the client gets unframed.
    client_->ExchangeDone(!ok || !chunked_ || dechunk_);
    return;
  }
  if (done_) return;
  if (!ok) {
    Cancel();
    return;
  }
  if (parser_.complete()) {
    Finish(true, !parser_.keep_alive() || dechunk_);
  } else {
    Read();
  }
}

void Exchange::UpstreamFailed(const std::string& why, bool replica_fault) {
  if (done_) return;
  watchdog_.cancel();
  boost::system::error_code ignored;
  if (upstream_) upstream_->close(ignored);
  upstream_.reset();
  std::shared_ptr<Replica> replica = replica_;
  ReleaseReplica();
  if (replica_fault) {
    ++replica->metrics.errors;
    gateway_.MarkSuspect(*replica, why);
  } else if (reused_) {
    // A kept-alive connection the replica had closed (servers drop idle ones, uvicorn after 5 s):
    // its pool-mates are as old, so drop them too, and do not count this as an attempt.
    boost::system::error_code ignored_close;
    for (auto& idle : replica->idle) idle->close(ignored_close);
    replica->idle.clear();
    --attempts_;
  }
  if (!head_sent_ && attempts_ < kMaxAttempts && client_->open()) {
    gateway_.Requeue(shared_from_this(), *model_);
    return;
  }
  ++model_->metrics.errors[ErrorKind::kUpstreamFailed];
  const std::string message =
      "replica " + replica->tenant + " of model '" + model_->spec.name + "' failed: " + why;
  if (!head_sent_) {
    done_ = true;
    ++model_->metrics.responses_by_code[502];
    gateway_.Dispatch(*model_);
    client_->Reply(ErrorResponse(502, message, true), false);
    return;
  }
  const bool between_chunks = parser_.between_chunks() || ended_between_chunks_;
  // (After a close, the parser was flushed: where it stood before says whether an event was cut.)
  const bool between_events = closed_before_end_ ? ended_between_events_ : sse_.between_events();
  // A de-chunked stream is the client's own to end: any point between events will do.
  const bool can_append =
      is_sse_ && between_events && (dechunk_ || (chunked_ ? between_chunks : closed_before_end_));
  if (!can_append) {
    // The body's length was promised, or the replica died inside a chunk or an event: anything
    // appended would be read as part of it. Closing cuts the response short, which every client
    // reports, and an SSE client drops the unfinished event.
    Finish(false, true);
    return;
  }
  // Between events: an SSE error event, in the stream's own chunked framing (then its end) or, in
  // a stream the close frames, as it is (then the close).
  const std::string event = "data: " + ErrorBody(502, message) + "\n";
  if (dechunk_) {
    tail_ = std::move(decoded_) + event;  // with what was decoded before the replica failed
  } else if (chunked_) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", event.size());
    tail_ = std::string(size) + event + "\r\n0\r\n\r\n";
  } else {
    tail_ = event;
  }
  done_ = true;  // no upstream any more; the write below ends the exchange
  writing_tail_ = true;
  client_->Write(tail_.data(), tail_.size(), shared_from_this());
}

void Exchange::Finish(bool ok, bool close_client) {
  if (done_) return;
  done_ = true;
  timer_.cancel();
  watchdog_.cancel();
  const int64_t now = NowNs();
  if (ok) {
    model_->metrics.latency.Observe(Seconds(now - arrival_ns_));
    ++model_->metrics.responses_by_code[parser_.status()];
  } else {
    ++model_->metrics.responses_by_code[502];
  }
  if (ok && parser_.keep_alive() && !leftover_ && upstream_ && replica_ && replica_->Routable() &&
      replica_->idle.size() <
          static_cast<size_t>(model_->spec.admission.max_inflight_per_replica)) {
    replica_->idle.push_back(std::move(upstream_));
  } else if (upstream_) {
    boost::system::error_code ignored;
    upstream_->close(ignored);
  }
  ReleaseReplica();
  gateway_.Dispatch(*model_);
  client_->ExchangeDone(close_client);
}

void Exchange::Cancel() {
  if (done_) return;
  done_ = true;
  queued_ = false;
  timer_.cancel();
  watchdog_.cancel();
  ++model_->metrics.errors[stalled_ ? ErrorKind::kClientStalled : ErrorKind::kClientCancelled];
  if (upstream_) {
    boost::system::error_code ignored;
    upstream_->close(ignored);  // the replica sees the request dropped
  }
  ReleaseReplica();
  gateway_.Dispatch(*model_);
}

void Exchange::EndAwaiting() {
  if (!awaiting_first_) return;
  awaiting_first_ = false;
  --replica_->pending;
}

void Exchange::ReleaseReplica() {
  if (!holding_slot_) return;
  EndAwaiting();
  holding_slot_ = false;
  --replica_->outstanding;
  --model_->in_flight;
}

}  // namespace gpufrac::serve
