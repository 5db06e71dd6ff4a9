// A synthetic OpenAI-compatible server with exact, known timings: the ground truth that tests and
// benchmarks of the load generator compare against, and a stand-in model replica for gpufrac
// serve. It streams chat/completions as SSE (chunked transfer encoding), answers non-streamed and
// embeddings requests, and reproduces real servers' quirks on demand.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace gpufrac::bench {

struct SynthConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: pick a free port
  int threads = 1;
  std::string model = "synthetic";
  int64_t ttft_ns = 20'000'000;  // request received -> first content event written
  int64_t itl_ns = 5'000'000;    // gap between content events
  int output_tokens = 16;        // when the request sets no max_tokens
  int max_output_tokens = 1'000'000;
  int tokens_per_event = 1;
  int reasoning_tokens = 0;  // the first N tokens go out as delta.reasoning_content
  // TTFT grows by this much for every other stream in flight when a request arrives.
  int64_t slowdown_ns_per_stream = 0;
  // Quirks.
  bool role_chunk = true;           // a role-only chunk right at receipt (chat)
  bool usage = true;                // honour stream_options.include_usage with a usage-only chunk
  bool keepalive_comments = false;  // ": keep-alive" comments before and between tokens
  int split_every = 0;              // every Nth content event goes out in two writes
  int64_t split_delay_ns = 300'000;
  int coalesce = 1;            // N content events per write (written when the last is due)
  int stream_error_every = 0;  // every Nth request fails mid-stream with an error event
  int stream_error_after = 1;  // ... after this many content events
  int http_error_every = 0;    // every Nth request gets a 500 at once
  bool record_ground_truth = false;
  // Busy-poll: instead of sleeping until each planned write, a worker sleeps only until
  // spin_window_ns before the next one and spins (non-blocking polls) from there, so writes leave
  // on time instead of a timer wake-up later, and requests are read as they arrive while it spins.
  // Costs up to a core per worker when writes are closer together than the window.
  bool busy_poll = false;
  int64_t spin_window_ns = 200'000;
};

// What the server did for one request, in NowNs() time.
struct GroundTruth {
  std::string request_id;  // the client's X-Gpufrac-Request-Id, or "s<n>"
  std::string path;
  int status = 200;
  bool stream = false;
  int64_t received_ns = 0;          // the whole request had been read
  std::vector<int64_t> content_ns;  // when each content event's last byte was handed to send()
  int64_t end_ns = 0;               // when the response's last byte was handed to send()
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int64_t planned_ttft_ns = 0;  // configured TTFT plus slowdown at arrival
  bool failed_mid_stream = false;
};

class SynthServer {
 public:
  explicit SynthServer(SynthConfig config);
  ~SynthServer();
  SynthServer(const SynthServer&) = delete;
  SynthServer& operator=(const SynthServer&) = delete;

  // Binds and starts serving on background threads.
  Status Start();
  // Stops accepting, closes every connection and joins the threads. Idempotent.
  void Stop();
  uint16_t port() const;
  std::vector<GroundTruth> TakeGroundTruth();
  uint64_t requests_served() const;

  struct Impl;  // defined in synth_server.cc; public so that its sessions can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpufrac::bench
