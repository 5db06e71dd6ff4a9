#include "bench/synth/synth_server.h"

#include <sys/prctl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>
#include <thread>

#include "bench/clock.h"
#include "bench/http_parser.h"

namespace gpufrac::bench {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// One write the server will make at a planned time.
struct PlannedWrite {
  int64_t at_ns = 0;
  std::string bytes;
  int content_events = 0;  // content events completed by this write (ground truth)
};

std::string HttpChunk(std::string_view payload) {
  char size[32];
  int n = std::snprintf(size, sizeof(size), "%zx\r\n", payload.size());
  std::string out(size, static_cast<size_t>(n));
  out.append(payload).append("\r\n");
  return out;
}

std::string SseData(const std::string& data) { return "data: " + data + "\n\n"; }

std::string FullResponse(int status, std::string_view reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string ErrorBody(std::string_view message, std::string_view type) {
  return json{{"error", {{"message", message}, {"type", type}}}}.dump();
}

int CountWords(std::string_view text) {
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

int PromptTokens(const json& body) {
  int tokens = 0;
  auto add = [&](const json& value) {
    if (value.is_string()) tokens += CountWords(value.get_ref<const std::string&>());
  };
  if (body.contains("messages") && body["messages"].is_array()) {
    for (const json& message : body["messages"]) {
      if (message.is_object() && message.contains("content")) add(message["content"]);
    }
  }
  if (body.contains("prompt")) add(body["prompt"]);
  if (body.contains("input")) {
    if (body["input"].is_array()) {
      for (const json& item : body["input"]) add(item);
    } else {
      add(body["input"]);
    }
  }
  return tokens;
}

std::string TokenText(int first_token, int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += "w" + std::to_string(first_token + i) + " ";
  return text;
}

class Session;

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// A session's next planned write. token tells a stale entry (its session closed) from a live one.
struct Due {
  int64_t at_ns;
  uint64_t token;
  std::shared_ptr<Session> session;
  bool operator>(const Due& other) const { return at_ns > other.at_ns; }
};

}  // namespace

// One event loop. Its sessions' planned writes wait in one heap, with one timer armed for the
// earliest (instead of a timer per session): due writes go out in one pass, and in busy-poll mode
// the loop knows how long it may sleep before it must spin.
struct Worker {
  Worker(const SynthConfig& config)
      : busy_poll(config.busy_poll), spin_window_ns(config.busy_poll ? config.spin_window_ns : 0) {}
  void Schedule(int64_t at_ns, uint64_t token, std::shared_ptr<Session> session);
  void FireDue();
  void Arm();
  void RunBusy();

  const bool busy_poll;
  const int64_t spin_window_ns;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer wake{io};
  int64_t wake_at = kNever;  // when `wake` is armed to fire; kNever: not armed
  // Declared after io: destroying it closes the sessions' sockets while io still exists.
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due;
  std::thread thread;
};

struct SynthServer::Impl {
  explicit Impl(SynthConfig c)
      : config(std::move(c)), escaped_model(nlohmann::json(config.model).dump()) {}
  void Accept(Worker* worker);
  void AddTruth(GroundTruth truth) {
    if (!config.record_ground_truth) return;
    std::lock_guard<std::mutex> lock(truth_mutex);
    truths.push_back(std::move(truth));
  }

  SynthConfig config;
  std::string escaped_model;  // the model name as a JSON string
  std::vector<std::unique_ptr<Worker>> workers;
  uint16_t port = 0;
  std::atomic<int> active_streams{0};
  std::atomic<uint64_t> request_counter{0};
  std::mutex truth_mutex;
  std::vector<GroundTruth> truths;
  bool running = false;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, SynthServer::Impl* server, Worker* worker)
      : socket_(std::move(socket)), server_(server), worker_(worker) {}

  // The worker's heap says this session's planned write is due.
  void OnDue(uint64_t token) {
    if (token == due_token_ && !closed_) Step();
  }

  void Start() {
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    socket_.non_blocking(true, ignored);
    Read();
  }

 private:
  const SynthConfig& config() const { return server_->config; }

  void Read() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(in_),
                            [self](const boost::system::error_code& ec, size_t n) {
                              if (ec) {
                                self->Close();
                                return;
                              }
                              self->parser_.Append(std::string_view(self->in_.data(), n));
                              self->NextRequest();
                              if (!self->closed_) self->Read();
                            });
  }

  void NextRequest() {
    if (busy_ || closed_) return;
    HttpRequest request;
    switch (parser_.Next(&request)) {
      case HttpRequestParser::Result::kNeedMore:
        return;
      case HttpRequestParser::Result::kError:
        close_after_ = true;
        busy_ = true;
        plan_.push_back(
            {NowNs(),
             FullResponse(400, "Bad Request", ErrorBody(parser_.error(), "invalid_request")), 0});
        Step();
        return;
      case HttpRequestParser::Result::kRequest:
        busy_ = true;
        Handle(request);
        return;
    }
  }

  void Handle(const HttpRequest& request) {
    const int64_t now = NowNs();
    close_after_ = !request.keep_alive;
    truth_ = GroundTruth{};
    truth_.received_ns = now;
    truth_.path = request.target;
    truth_.request_id = request.Header("x-gpufrac-request-id");
    uint64_t index = ++server_->request_counter;
    if (truth_.request_id.empty()) truth_.request_id = "s" + std::to_string(index);
    escaped_id_ = json("cmpl-" + truth_.request_id).dump();
    record_ = false;
    if (request.method == "GET" && request.target == "/health") {
      Immediate(200, "OK", R"({"status":"ok"})");
      return;
    }
    if (request.method == "GET" && request.target == "/v1/models") {
      json models = {{"object", "list"},
                     {"data", json::array({{{"id", config().model}, {"object", "model"}}})}};
      Immediate(200, "OK", models.dump());
      return;
    }
    bool chat = request.target == "/v1/chat/completions";
    bool completions = request.target == "/v1/completions";
    bool embeddings = request.target == "/v1/embeddings";
    if (request.method != "POST" || !(chat || completions || embeddings)) {
      Immediate(404, "Not Found", ErrorBody("no route " + request.target, "not_found"));
      return;
    }
    json body = json::parse(request.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      Immediate(400, "Bad Request", ErrorBody("request body is not a JSON object", "invalid"));
      return;
    }
    record_ = true;
    truth_.prompt_tokens = PromptTokens(body);
    if (config().http_error_every > 0 && index % config().http_error_every == 0) {
      truth_.status = 500;
      Immediate(500, "Internal Server Error", ErrorBody("synthetic failure", "server_error"));
      return;
    }
    int streams = ++server_->active_streams;
    counted_stream_ = true;
    truth_.planned_ttft_ns = config().ttft_ns + config().slowdown_ns_per_stream * (streams - 1);
    if (embeddings) {
      PlanEmbeddings(now);
    } else {
      int tokens = config().output_tokens;
      if (body.contains("max_tokens") && body["max_tokens"].is_number_integer()) {
        tokens = body["max_tokens"].get<int>();
      } else if (body.contains("max_completion_tokens") &&
                 body["max_completion_tokens"].is_number_integer()) {
        tokens = body["max_completion_tokens"].get<int>();
      }
      tokens = std::clamp(tokens, 0, config().max_output_tokens);
      bool stream = body.value("stream", false);
      bool include_usage = false;
      if (body.contains("stream_options") && body["stream_options"].is_object()) {
        include_usage = body["stream_options"].value("include_usage", false);
      }
      bool fail = config().stream_error_every > 0 && index % config().stream_error_every == 0;
      truth_.stream = stream;
      if (stream) {
        PlanStream(now, chat, tokens, include_usage && config().usage, fail);
      } else {
        PlanFull(now, chat, tokens);
      }
    }
    Step();
  }

  void Immediate(int status, std::string_view reason, const std::string& body) {
    truth_.status = status;
    plan_.push_back({NowNs(), FullResponse(status, reason, body), 0});
    Step();
  }

  // Content chunks are built by hand (the server's hot path: one per token per stream); the
  // strings that come from outside (model name, request id) are JSON-escaped once.
  std::string ChunkJson(bool chat, int first_token, int count, bool reasoning, bool last) {
    std::string out;
    out.reserve(192);
    out += "{\"id\":";
    out += escaped_id_;
    out += chat ? ",\"object\":\"chat.completion.chunk\"" : ",\"object\":\"text_completion\"";
    out += ",\"created\":0,\"model\":";
    out += server_->escaped_model;
    out += ",\"choices\":[{\"index\":0,";
    if (chat) {
      out += reasoning ? "\"delta\":{\"reasoning_content\":\"" : "\"delta\":{\"content\":\"";
      out += TokenText(first_token, count);
      out += "\"}";
    } else {
      out += "\"text\":\"";
      out += TokenText(first_token, count);
      out += "\"";
    }
    out += last ? ",\"finish_reason\":\"length\"}]}" : ",\"finish_reason\":null}]}";
    return out;
  }

  void PlanStream(int64_t t0, bool chat, int tokens, bool usage, bool fail) {
    const SynthConfig& c = config();
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    if (chat && c.role_chunk) {
      json role = {{"id", "cmpl-" + truth_.request_id},
                   {"object", "chat.completion.chunk"},
                   {"model", c.model},
                   {"choices", json::array({{{"index", 0},
                                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                                             {"finish_reason", nullptr}}})}};
      head += HttpChunk(SseData(role.dump()));
    }
    plan_.push_back({t0, std::move(head), 0});
    const int64_t first = t0 + truth_.planned_ttft_ns;
    if (c.keepalive_comments)
      plan_.push_back({t0 + truth_.planned_ttft_ns / 2, HttpChunk(": keep-alive\n\n"), 0});
    const int per_event = std::max(1, c.tokens_per_event);
    const int events = (tokens + per_event - 1) / per_event;
    const int sent_events = fail ? std::min(events, c.stream_error_after) : events;
    const int group = std::max(1, c.coalesce);
    std::string pending;
    int pending_events = 0;
    int64_t t = first;
    int emitted_tokens = 0;
    for (int e = 0; e < sent_events; ++e) {
      t = first + e * c.itl_ns;
      int count = std::min(per_event, tokens - emitted_tokens);
      bool reasoning = emitted_tokens < c.reasoning_tokens;
      std::string event =
          SseData(ChunkJson(chat, emitted_tokens, count, reasoning, !fail && e == events - 1));
      emitted_tokens += count;
      if (c.keepalive_comments && e > 0) {
        plan_.push_back({t - c.itl_ns / 2, HttpChunk(": keep-alive\n\n"), 0});
      }
      if (c.split_every > 0 && (e + 1) % c.split_every == 0 && group == 1) {
        size_t half = event.size() / 2;
        int64_t early = std::max(t - c.split_delay_ns, plan_.back().at_ns);
        plan_.push_back({early, HttpChunk(event.substr(0, half)), 0});
        plan_.push_back({t, HttpChunk(event.substr(half)), 1});
        continue;
      }
      pending += HttpChunk(event);
      ++pending_events;
      if (pending_events == group || e == sent_events - 1) {
        plan_.push_back({t, std::move(pending), pending_events});
        pending.clear();
        pending_events = 0;
      }
    }
    truth_.completion_tokens = emitted_tokens;
    int64_t end = std::max(t, first);
    if (fail) {
      truth_.failed_mid_stream = true;
      plan_.push_back(
          {end, HttpChunk(SseData(ErrorBody("synthetic mid-stream failure", "server_error"))), 0});
    } else if (usage) {
      json usage_chunk = {{"id", "cmpl-" + truth_.request_id},
                          {"object", chat ? "chat.completion.chunk" : "text_completion"},
                          {"model", c.model},
                          {"choices", json::array()},
                          {"usage",
                           {{"prompt_tokens", truth_.prompt_tokens},
                            {"completion_tokens", emitted_tokens},
                            {"total_tokens", truth_.prompt_tokens + emitted_tokens}}}};
      plan_.push_back({end, HttpChunk(SseData(usage_chunk.dump())), 0});
    }
    plan_.push_back({end, HttpChunk(SseData("[DONE]")) + "0\r\n\r\n", 0});
  }

  void PlanFull(int64_t t0, bool chat, int tokens) {
    const SynthConfig& c = config();
    const int per_event = std::max(1, c.tokens_per_event);
    const int events = (tokens + per_event - 1) / per_event;
    int64_t at = t0 + truth_.planned_ttft_ns + std::max(0, events - 1) * c.itl_ns;
    json choice = {{"index", 0}, {"finish_reason", "length"}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", TokenText(0, tokens)}};
    } else {
      choice["text"] = TokenText(0, tokens);
    }
    json body = {{"id", "cmpl-" + truth_.request_id},
                 {"object", chat ? "chat.completion" : "text_completion"},
                 {"model", c.model},
                 {"choices", json::array({choice})},
                 {"usage",
                  {{"prompt_tokens", truth_.prompt_tokens},
                   {"completion_tokens", tokens},
                   {"total_tokens", truth_.prompt_tokens + tokens}}}};
    truth_.completion_tokens = tokens;
    plan_.push_back({at, FullResponse(200, "OK", body.dump()), 0});
  }

  void PlanEmbeddings(int64_t t0) {
    json embedding = json::array();
    for (int i = 0; i < 8; ++i) embedding.push_back(0.125 * i);
    json body = {
        {"object", "list"},
        {"model", config().model},
        {"data", json::array({{{"object", "embedding"}, {"index", 0}, {"embedding", embedding}}})},
        {"usage",
         {{"prompt_tokens", truth_.prompt_tokens}, {"total_tokens", truth_.prompt_tokens}}}};
    plan_.push_back({t0 + truth_.planned_ttft_ns, FullResponse(200, "OK", body.dump()), 0});
  }

  // Makes every write that is due, then sleeps until the next one.
  void Step() {
    if (closed_) return;
    int64_t now = NowNs();
    while (next_ < plan_.size() && plan_[next_].at_ns <= now) {
      PlannedWrite& write = plan_[next_++];
      int64_t written = NowNs();
      Send(write.bytes);
      for (int i = 0; i < write.content_events; ++i) truth_.content_ns.push_back(written);
      if (next_ == plan_.size()) truth_.end_ns = written;
      if (closed_) return;
    }
    if (next_ < plan_.size()) {
      worker_->Schedule(plan_[next_].at_ns, ++due_token_, shared_from_this());
      return;
    }
    EndResponse();
  }

  void EndResponse() {
    if (counted_stream_) --server_->active_streams;
    counted_stream_ = false;
    if (record_) server_->AddTruth(std::move(truth_));
    plan_.clear();
    next_ = 0;
    busy_ = false;
    if (close_after_) {
      CloseAfterFlush();
      return;
    }
    NextRequest();
  }

  // Writes now when the socket takes it (the common case), else queues behind the pending write.
  void Send(const std::string& bytes) {
    if (!writing_) {
      boost::system::error_code ec;
      size_t n = socket_.write_some(asio::buffer(bytes), ec);
      if (ec && ec != asio::error::would_block) {
        Close();
        return;
      }
      if (ec) n = 0;
      if (n == bytes.size()) return;
      out_.append(bytes, n, std::string::npos);
      Flush();
      return;
    }
    out_ += bytes;
  }

  void Flush() {
    writing_ = true;
    sending_.swap(out_);
    out_.clear();
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(sending_),
                      [self](const boost::system::error_code& ec, size_t) {
                        self->writing_ = false;
                        self->sending_.clear();
                        if (ec) {
                          self->Close();
                          return;
                        }
                        if (!self->out_.empty()) {
                          self->Flush();
                        } else if (self->close_pending_) {
                          self->Close();
                        }
                      });
  }

  void CloseAfterFlush() {
    if (writing_) {
      close_pending_ = true;
    } else {
      Close();
    }
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    if (counted_stream_) --server_->active_streams;
    counted_stream_ = false;
    boost::system::error_code ignored;
    ++due_token_;  // a pending entry in the worker's heap is now stale
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  SynthServer::Impl* server_;
  Worker* worker_;
  uint64_t due_token_ = 0;
  std::array<char, 16 * 1024> in_{};
  HttpRequestParser parser_;
  std::vector<PlannedWrite> plan_;
  size_t next_ = 0;
  GroundTruth truth_;
  std::string escaped_id_;  // "cmpl-<request id>" as a JSON string
  std::string out_, sending_;
  bool writing_ = false, busy_ = false, closed_ = false;
  bool close_after_ = false, close_pending_ = false;
  bool counted_stream_ = false, record_ = false;
};

}  // namespace

void Worker::Schedule(int64_t at_ns, uint64_t token, std::shared_ptr<Session> session) {
  due.push(Due{at_ns, token, std::move(session)});
  Arm();
}

void Worker::FireDue() {
  // The clock is read again after each write: writes that fell due meanwhile go in this pass.
  while (!due.empty() && due.top().at_ns <= NowNs()) {
    Due next = due.top();
    due.pop();
    next.session->OnDue(next.token);
  }
}

// Arms the timer for the earliest planned write (in busy-poll mode: for the start of the spin
// before it) unless it is already armed for that time or earlier. An early wake-up only re-arms.
void Worker::Arm() {
  if (due.empty()) return;
  const int64_t at = due.top().at_ns - spin_window_ns;
  if (at >= wake_at) return;
  wake_at = at;
  wake.expires_at(asio::steady_timer::time_point(std::chrono::nanoseconds(at)));
  wake.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // re-armed for an earlier time, or stopped
    wake_at = kNever;
    if (busy_poll) return;  // RunBusy's loop takes it from here
    FireDue();
    Arm();
  });
}

// Sleeps in epoll (run_one) while the next planned write is more than the spin window away, and
// spins with non-blocking polls inside the window, firing each write as soon as it is due.
void Worker::RunBusy() {
  auto guard = asio::make_work_guard(io);
  while (!io.stopped()) {
    FireDue();
    const int64_t next = due.empty() ? kNever : due.top().at_ns;
    if (next - NowNs() <= spin_window_ns) {
      io.poll();
      continue;
    }
    Arm();
    io.run_one();
  }
}

void SynthServer::Impl::Accept(Worker* worker) {
  worker->acceptor.async_accept(
      [this, worker](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !worker->acceptor.is_open()) return;
        if (!ec) std::make_shared<Session>(std::move(socket), this, worker)->Start();
        Accept(worker);
      });
}

SynthServer::SynthServer(SynthConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
SynthServer::~SynthServer() { Stop(); }

Status SynthServer::Start() {
  Impl& s = *impl_;
  if (s.running) return Status::Error("synthetic server already started");
  boost::system::error_code ec;
  auto address = asio::ip::make_address(s.config.host, ec);
  if (ec) return Status::Error("bad listen address '" + s.config.host + "'");
  uint16_t port = s.config.port;
  for (int i = 0; i < std::max(1, s.config.threads); ++i) {
    auto worker = std::make_unique<Worker>(s.config);
    tcp::endpoint endpoint(address, port);
    worker->acceptor.open(endpoint.protocol(), ec);
    if (!ec) worker->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) worker->acceptor.set_option(ReusePort(true), ec);
    if (!ec) worker->acceptor.bind(endpoint, ec);
    if (!ec) worker->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Error("cannot listen on " + s.config.host + ":" + std::to_string(port) + ": " +
                           ec.message());
    }
    port = worker->acceptor.local_endpoint().port();  // later workers share the chosen port
    s.workers.push_back(std::move(worker));
  }
  s.port = port;
  for (auto& worker : s.workers) {
    s.Accept(worker.get());
    Worker* w = worker.get();
    w->thread = std::thread([w] {
      // Token timers fire at their planned time, not up to 50 us later (the default slack).
      prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
      if (w->busy_poll) {
        w->RunBusy();
      } else {
        w->io.run();
      }
    });
  }
  s.running = true;
  return Status::Ok();
}

void SynthServer::Stop() {
  Impl& s = *impl_;
  if (!s.running) return;
  s.running = false;
  for (auto& worker : s.workers) worker->io.stop();
  for (auto& worker : s.workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  s.workers.clear();  // destroys pending handlers, and with them the sessions and sockets
}

uint16_t SynthServer::port() const { return impl_->port; }

std::vector<GroundTruth> SynthServer::TakeGroundTruth() {
  std::lock_guard<std::mutex> lock(impl_->truth_mutex);
  return std::move(impl_->truths);
}

uint64_t SynthServer::requests_served() const { return impl_->request_counter.load(); }

}  // namespace gpufrac::bench
