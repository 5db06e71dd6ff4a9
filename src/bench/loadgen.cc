#include "bench/loadgen.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>

#include "bench/clock.h"
#include "bench/progress.h"
#include "bench/sse_parser.h"

namespace gpufrac::bench {
namespace {

constexpr int64_t kNsPerS = 1'000'000'000;
constexpr size_t kMaxErrorBody = 4096;
// Beyond this a single event loop cannot send on schedule (each request costs microseconds), and
// the planned gaps would round to nothing.
constexpr double kMaxRate = 1e6;

class WorkloadRunner;

// One request in flight: turns the bytes of its response into a RequestRecord.
class Call : public ResponseHandler {
 public:
  Call(WorkloadRunner* runner, RequestRecord record, bool stream)
      : runner_(runner),
        record_(std::move(record)),
        stream_(stream),
        sse_([this](const SseEvent& event) { OnEvent(event); }) {}

  void OnStatus(int status, bool body_until_close) override {
    record_.http_status = status;
    body_until_close_ = body_until_close;
  }

  void OnBody(std::string_view data, int64_t received_ns) override {
    if (record_.first_byte_ns == 0) record_.first_byte_ns = received_ns;
    bool success = record_.http_status >= 200 && record_.http_status < 300;
    // A stream keeps its first bytes until its first event: if it has none, they say what came
    // instead. (Once an event came they are not needed, and copying every event costs.)
    const bool stream_ok = stream_ && success;
    if ((body_.size() < kMaxErrorBody && (!stream_ok || events_ == 0)) || (success && !stream_)) {
      body_.append(data);
    }
    if (stream_ && success) {
      event_ns_ = received_ns;
      sse_.Feed(data);
    }
  }

  void OnComplete(ErrorKind kind, const std::string& message, int64_t last_ns) override;

  RequestRecord& record() { return record_; }

 private:
  void OnEvent(const SseEvent& event) {
    ++events_;
    ChunkInfo info = ClassifyStreamEvent(event.data);
    if (info.done || info.finished) saw_end_ = true;
    if (info.done) return;
    if (info.malformed) {
      if (!malformed_) malformed_message_ = "malformed SSE data: " + event.data.substr(0, 200);
      malformed_ = true;
      return;
    }
    if (info.is_error && !stream_error_) {
      stream_error_ = true;
      stream_error_message_ = info.error_message;
    }
    if (info.has_content) record_.content_ns.push_back(event_ns_);
    if (info.prompt_tokens >= 0) record_.prompt_tokens = info.prompt_tokens;
    if (info.completion_tokens >= 0) record_.completion_tokens = info.completion_tokens;
  }

  WorkloadRunner* runner_;
  RequestRecord record_;
  bool stream_;
  SseParser sse_;
  int64_t event_ns_ = 0;
  std::string body_;
  size_t events_ = 0;
  bool body_until_close_ = false;
  bool saw_end_ = false;  // "[DONE]" or a finish_reason
  bool stream_error_ = false, malformed_ = false;
  std::string stream_error_message_, malformed_message_;
};

class WorkloadRunner {
 public:
  WorkloadRunner(EventLoop& loop, const Workload& workload, int index, uint64_t seed,
                 const RunOptions& options, std::vector<RequestRecord>* records,
                 std::function<void()> on_finished)
      : loop_(loop),
        workload_(workload),
        index_(index),
        client_(loop, workload.target, static_cast<int64_t>(workload.timeout_s * kNsPerS)),
        rng_(seed),
        grace_ns_(static_cast<int64_t>(options.grace_s * kNsPerS)),
        records_(records),
        on_finished_(std::move(on_finished)) {}

  void Start(int64_t t0) {
    const LoadSpec& load = workload_.load;
    t0_ = t0;
    warmup_end_ns_ = t0 + static_cast<int64_t>(load.warmup_s * kNsPerS);
    if (load.requests == 0) {
      stop_ns_ = warmup_end_ns_ + static_cast<int64_t>(load.duration_s * kNsPerS);
      loop_.RunAt(stop_ns_, [this] { StopIssuing(/*drop_queued=*/true); });
    }
    if (load.mode == LoadMode::kClosedLoop) {
      for (int user = 0; user < load.concurrency; ++user) {
        int64_t offset = static_cast<int64_t>(load.ramp_up_s * kNsPerS * user / load.concurrency);
        loop_.RunAt(t0 + offset, [this] { IssueClosedLoop(); });
      }
    } else {
      next_planned_ns_ = t0;
      loop_.RunAt(t0, [this] { OnArrivalTick(); });
    }
  }

  void OnCallDone(Call* call) {
    records_->push_back(std::move(call->record()));
    --in_flight_;
    ++completed_;
    delete call;
    if (workload_.load.mode == LoadMode::kClosedLoop) {
      IssueClosedLoop();
    } else if (!queued_.empty()) {
      int64_t planned = queued_.front();
      queued_.pop_front();
      Issue(planned, NowNs());
      ArmGraceOnce();
    }
    MaybeFinish();
  }

  bool finished() const { return finished_; }
  uint64_t connections_opened() const { return client_.connections_opened(); }
  int64_t issued() const { return issued_; }
  int64_t completed() const { return completed_; }
  size_t in_flight() const { return in_flight_; }
  size_t unsent() const { return unsent_; }

 private:
  // Whether the next request may go: counts and the duration bound it. A request count is of
  // measured requests: warm-up ones, by count or by time, come on top of it.
  bool MayIssue(int64_t planned_ns) {
    if (stopped_) return false;
    const LoadSpec& load = workload_.load;
    if (load.requests > 0 && measured_issued_ >= load.requests) {
      StopIssuing(/*drop_queued=*/false);
      return false;
    }
    if (load.requests == 0 && planned_ns >= stop_ns_) {
      StopIssuing(/*drop_queued=*/true);
      return false;
    }
    return true;
  }

  void IssueClosedLoop() {
    int64_t now = NowNs();
    if (!MayIssue(now)) return;
    Commit(now);
    Issue(now, now);
  }

  int64_t NextGap() {
    const LoadSpec& load = workload_.load;
    double mean_s = 1.0 / load.rate;
    double gap_s = mean_s;
    switch (load.arrival) {
      case Arrival::kConstant:
        break;
      case Arrival::kPoisson:
        gap_s = std::exponential_distribution<double>(load.rate)(rng_);
        break;
      case Arrival::kGamma:
        gap_s = std::gamma_distribution<double>(load.burstiness, mean_s / load.burstiness)(rng_);
        break;
    }
    // At least 1 ns, so that the schedule always moves on (a gamma draw can round to 0).
    return std::max<int64_t>(1, static_cast<int64_t>(gap_s * kNsPerS));
  }

  // Open loop: send every request whose planned time has come (queue it when the concurrency
  // cap is reached), then sleep until the next planned time. Planned times come from the
  // arrival process alone, so lateness shows as schedule lag instead of a lower rate.
  void OnArrivalTick() {
    const LoadSpec& load = workload_.load;
    int64_t now = NowNs();
    while (next_planned_ns_ <= now) {
      if (!MayIssue(next_planned_ns_)) return;
      if (load.concurrency > 0 && in_flight_ >= static_cast<size_t>(load.concurrency)) {
        queued_.push_back(next_planned_ns_);
      } else {
        Issue(next_planned_ns_, now);
      }
      Commit(next_planned_ns_);  // a queued request is committed to the schedule too
      next_planned_ns_ += NextGap();
      now = NowNs();
    }
    loop_.RunAt(next_planned_ns_, [this] { OnArrivalTick(); });
  }

  // Counts a request in the schedule, sent now or queued; requests go out in this order, so the
  // warm-up rule here is the one Issue applies to the same request.
  void Commit(int64_t planned_ns) {
    if (!IsWarmup(issued_ + 1, planned_ns)) ++measured_issued_;
    ++issued_;
  }

  bool IsWarmup(int64_t ordinal, int64_t planned_ns) const {
    return ordinal <= workload_.load.warmup_requests || planned_ns < warmup_end_ns_;
  }

  // Sends one request now; the caller has counted it with Commit.
  void Issue(int64_t planned_ns, int64_t dispatched_ns) {
    RequestRecord record;
    record.id = (static_cast<uint64_t>(index_) << 48) | ++sequence_;
    record.workload = index_;
    record.planned_ns = planned_ns;
    record.dispatched_ns = dispatched_ns;
    int64_t ordinal = static_cast<int64_t>(sequence_);  // 1-based send order
    record.warmup = IsWarmup(ordinal, planned_ns);
    Prompt prompt = workload_.prompts->Next(rng_);
    record.prompt_words = prompt.words;
    record.requested_output_tokens = prompt.max_tokens;
    record.embedding = workload_.request.endpoint == Endpoint::kEmbeddings;
    std::string body = BuildRequestBody(workload_.request, prompt);
    ++in_flight_;
    auto* call =
        new Call(this, std::move(record),
                 workload_.request.stream && workload_.request.endpoint != Endpoint::kEmbeddings);
    uint64_t id = call->record().id;
    call->record().start_ns = NowNs();
    client_.Post(EndpointPath(workload_.request.endpoint), std::move(body), id, call);
  }

  // A count-bounded run still sends the requests queued behind the concurrency cap (they are part
  // of the count); a duration-bounded one drops them: they never left, and the duration is over.
  void StopIssuing(bool drop_queued) {
    if (stopped_) return;
    stopped_ = true;
    if (drop_queued) {
      unsent_ += queued_.size();
      issued_ -= static_cast<int64_t>(queued_.size());
      queued_.clear();
    }
    ArmGraceOnce();
    MaybeFinish();
  }

  // After the last request has left, those in flight get grace_ns_ to finish.
  void ArmGraceOnce() {
    if (grace_armed_ || !stopped_ || !queued_.empty() || in_flight_ == 0) return;
    grace_armed_ = true;
    loop_.RunAt(NowNs() + grace_ns_, [this] {
      if (!finished_) client_.CancelAll();
    });
  }

  void MaybeFinish() {
    if (finished_ || !stopped_ || in_flight_ > 0 || !queued_.empty()) return;
    finished_ = true;
    on_finished_();
  }

  EventLoop& loop_;
  const Workload& workload_;
  int index_;
  HttpClient client_;
  std::mt19937_64 rng_;
  int64_t grace_ns_;
  std::vector<RequestRecord>* records_;
  std::function<void()> on_finished_;
  int64_t t0_ = 0, warmup_end_ns_ = 0, stop_ns_ = 0, next_planned_ns_ = 0;
  uint64_t sequence_ = 0;
  int64_t issued_ = 0, completed_ = 0;
  int64_t measured_issued_ = 0;  // of issued_, those past the warm-up
  size_t in_flight_ = 0;
  size_t unsent_ = 0;  // queued behind the cap when a duration run ended
  std::deque<int64_t> queued_;
  bool stopped_ = false, finished_ = false, grace_armed_ = false;
};

void Call::OnComplete(ErrorKind kind, const std::string& message, int64_t last_ns) {
  record_.end_ns = last_ns;
  if (kind == ErrorKind::kNone) {
    if (record_.http_status < 200 || record_.http_status >= 300) {
      kind = ErrorKind::kHttpStatus;
      ChunkInfo info = ClassifyStreamEvent(body_);
      // The server's own words: an OpenAI error object, or else the start of the body.
      std::string detail = info.is_error ? info.error_message : body_.substr(0, 200);
      record_.error_message =
          "HTTP " + std::to_string(record_.http_status) + (detail.empty() ? "" : ": " + detail);
    } else if (stream_) {
      sse_.Finish();
      if (stream_error_) {
        kind = ErrorKind::kStreamError;
        record_.error_message = "error event: " + stream_error_message_;
      } else if (malformed_) {
        kind = ErrorKind::kProtocol;
        record_.error_message = malformed_message_;
      } else if (events_ == 0) {
        // Status 200 but no event: an error object in a plain JSON body, or not SSE at all.
        ChunkInfo info = ClassifyStreamEvent(body_);
        kind = info.is_error ? ErrorKind::kStreamError : ErrorKind::kProtocol;
        record_.error_message = info.is_error
                                    ? "error in body: " + info.error_message
                                    : "no SSE event in the stream: " +
                                          (body_.empty() ? "empty body" : body_.substr(0, 200));
      } else if (body_until_close_ && !saw_end_) {
        // Only the close frames such a body: without "[DONE]" or a finish_reason it was cut.
        kind = ErrorKind::kClosed;
        record_.error_message =
            "the connection closed before the stream's end ([DONE] or a finish_reason)";
      }
    } else {
      ChunkInfo info = ClassifyStreamEvent(body_);
      if (info.malformed) {
        kind = ErrorKind::kProtocol;
        record_.error_message = "response body is not a JSON object";
      } else if (info.is_error) {
        kind = ErrorKind::kStreamError;
        record_.error_message = "error in body: " + info.error_message;
      }
      if (info.prompt_tokens >= 0) record_.prompt_tokens = info.prompt_tokens;
      if (info.completion_tokens >= 0) record_.completion_tokens = info.completion_tokens;
      // No usage: a whole answer has no events to count, so its words stand in for tokens.
      if (kind == ErrorKind::kNone && info.completion_tokens < 0) {
        record_.response_words = CountResponseWords(body_);
      }
    }
  } else {
    record_.error_message = message;
  }
  record_.error = kind;
  runner_->OnCallDone(this);
}

}  // namespace

Status ParseArrival(std::string_view text, Arrival* arrival) {
  if (text == "constant") {
    *arrival = Arrival::kConstant;
  } else if (text == "poisson") {
    *arrival = Arrival::kPoisson;
  } else if (text == "gamma") {
    *arrival = Arrival::kGamma;
  } else {
    return Status::Error("unknown arrival '" + std::string(text) +
                         "' (expected constant, poisson or gamma)");
  }
  return Status::Ok();
}

Status ValidateWorkload(const Workload& w) {
  const std::string where = "workload '" + w.name + "': ";
  const LoadSpec& load = w.load;
  if (!w.prompts) return Status::Error(where + "no prompt source");
  if (w.request.model.empty()) return Status::Error(where + "no model given");
  if (load.mode == LoadMode::kClosedLoop && load.concurrency < 1) {
    return Status::Error(where + "concurrency must be at least 1");
  }
  if (load.mode == LoadMode::kOpenLoop && !(load.rate > 0)) {
    return Status::Error(where + "request rate must be positive");
  }
  if (load.mode == LoadMode::kOpenLoop && load.rate > kMaxRate) {
    return Status::Error(where + "request rate must be at most 1000000 per second");
  }
  if (load.concurrency < 0) return Status::Error(where + "concurrency must not be negative");
  if (load.arrival == Arrival::kGamma && !(load.burstiness > 0)) {
    return Status::Error(where + "burstiness must be positive");
  }
  if (load.requests < 0 || load.warmup_requests < 0 || load.duration_s < 0 || load.warmup_s < 0 ||
      load.ramp_up_s < 0) {
    return Status::Error(where + "counts and durations must not be negative");
  }
  if (load.requests == 0 && !(load.duration_s > 0)) {
    return Status::Error(where + "give a request count or a duration");
  }
  if (!(w.timeout_s > 0)) return Status::Error(where + "timeout must be positive");
  return Status::Ok();
}

RunResult RunLoad(const std::vector<Workload>& workloads, const RunOptions& options) {
  RunResult result;
  EventLoop loop(options.busy_poll);
  std::vector<std::unique_ptr<WorkloadRunner>> runners;
  size_t finished = 0;
  for (size_t i = 0; i < workloads.size(); ++i) {
    result.workload_names.push_back(workloads[i].name);
    runners.push_back(std::make_unique<WorkloadRunner>(loop, workloads[i], static_cast<int>(i),
                                                       options.seed + i * 7919, options,
                                                       &result.records, [&] {
                                                         if (++finished == workloads.size())
                                                           loop.Stop();
                                                       }));
  }
  if (workloads.empty()) return result;
  // Timers on this thread fire at their time, not up to 50 us later (Linux's default slack):
  // open-loop sends leave on schedule. Restored on return; the caller's thread is borrowed.
  const int previous_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  std::unique_ptr<ProgressLine> progress;
  if (options.progress) progress = std::make_unique<ProgressLine>(workloads, &result.records);
  // Start every workload at the same instant, a moment from now, so set-up costs no schedule lag.
  const int64_t t0 = NowNs() + 1'000'000;
  result.start_ns = t0;
  for (auto& runner : runners) runner->Start(t0);
  // Declared here, not in the block below: the copies that the timers hold refer to it.
  std::function<void()> tick;
  if (progress) {
    tick = [&] {
      size_t in_flight = 0;
      for (auto& runner : runners) in_flight += runner->in_flight();
      progress->Update(NowNs() - t0, in_flight);
      if (finished < workloads.size()) loop.RunAt(NowNs() + ProgressLine::kIntervalNs, tick);
    };
    loop.RunAt(t0 + ProgressLine::kIntervalNs, tick);
  }
  loop.Run();
  result.end_ns = NowNs();
  if (previous_slack > 0)
    prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(previous_slack), 0, 0, 0);
  if (progress) progress->Finish(result.end_ns - t0);
  for (auto& runner : runners) {
    result.connections_opened += runner->connections_opened();
    result.unsent += runner->unsent();
  }
  return result;
}

}  // namespace gpufrac::bench
