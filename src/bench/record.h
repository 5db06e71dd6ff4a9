// What the load generator knows about one request: planned and actual times, the arrival time of
// every content-bearing event, token counts and the outcome. All times are absolute NowNs() values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gpufrac::bench {

enum class ErrorKind {
  kNone,
  kConnect,      // could not connect
  kHttpStatus,   // the server answered with a non-2xx status
  kStreamError,  // an error object arrived inside the stream (or the response body)
  kProtocol,     // malformed HTTP, SSE or JSON
  kClosed,       // the connection closed before the response was complete
  kTimeout,      // the request ran past its timeout
  kCancelled,    // still running when the grace period after the run ended (failed)
};
const char* ErrorKindName(ErrorKind kind);

struct RequestRecord {
  uint64_t id = 0;
  int workload = 0;                 // index into the run's workloads
  bool warmup = false;              // warm-up requests are recorded but excluded from the metrics
  int64_t planned_ns = 0;           // when the schedule wanted it sent
  int64_t dispatched_ns = 0;        // when it got a concurrency slot (== planned unless capped)
  int64_t start_ns = 0;             // when the client began sending it (connect or write)
  int64_t first_byte_ns = 0;        // first response bytes off the socket
  int64_t end_ns = 0;               // last response bytes off the socket
  std::vector<int64_t> content_ns;  // arrival of each event with non-empty content or reasoning
  int http_status = 0;
  int prompt_tokens = -1;      // usage.prompt_tokens; -1 when the server reported none
  int completion_tokens = -1;  // usage.completion_tokens; -1 when the server reported none
  int prompt_words = 0;        // client-side size of the prompt in words
  int response_words = -1;     // non-streamed answers: words of their text; -1 when not counted
  int requested_output_tokens = -1;  // the max_tokens sent; -1 when none
  // An embeddings request: its answer is vectors, with no output tokens to count, so no usage of
  // them can be missing.
  bool embedding = false;
  ErrorKind error = ErrorKind::kNone;
  std::string error_message;

  bool ok() const { return error == ErrorKind::kNone; }
  // Output tokens as the metrics count them: the server's usage when given, else the number of
  // content events (one token per event, what a server without usage typically sends), or for a
  // whole (non-streamed) answer the words of its text.
  int OutputTokens() const {
    if (embedding) return 0;
    if (completion_tokens >= 0) return completion_tokens;
    if (response_words >= 0) return response_words;
    return static_cast<int>(content_ns.size());
  }
};

}  // namespace gpufrac::bench
