// Incremental HTTP/1.1 parsers that do no I/O: bytes go in as they come off the socket, parsed
// pieces come out. The response parser streams the body (Content-Length, chunked, or until close)
// so that SSE events can be timestamped as they arrive; the request parser serves the synthetic
// server (Content-Length bodies only, as OpenAI clients send).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace gpufrac::bench {

struct HttpHeader {
  std::string name;  // lower-cased
  std::string value;
};

class HttpResponseParser {
 public:
  // Called with each piece of decoded body as it is parsed (chunk framing removed).
  using BodyCallback = std::function<void(std::string_view)>;

  explicit HttpResponseParser(BodyCallback on_body) : on_body_(std::move(on_body)) {}

  // Feeds bytes; returns false on a protocol error (see error()). After the response is complete,
  // the remaining bytes are ignored and consumed() says how many were used.
  bool Feed(std::string_view bytes);
  // The peer closed the connection: completes a close-delimited body; false if the response was
  // cut short.
  bool FeedEof();

  bool headers_done() const { return state_ > State::kHeaders; }
  bool complete() const { return state_ == State::kDone; }
  int status() const { return status_; }
  bool keep_alive() const { return keep_alive_; }
  const std::vector<HttpHeader>& headers() const { return headers_; }
  const std::string& error() const { return error_; }
  size_t consumed() const { return consumed_; }
  // Whether the bytes fed so far end a chunk of a chunked body (more may follow): a proxy may then
  // append chunks of its own without breaking the framing.
  bool between_chunks() const { return state_ == State::kChunkSize && line_.empty(); }
  // Whether the body is framed by the connection's close alone (no length, not chunked).
  bool body_until_close() const { return state_ == State::kBodyUntilClose; }
  // Where the final response's status line starts in the bytes fed: interim 1xx responses (103
  // Early Hints, 100 Continue) and stray blank lines before it are skipped, not returned as the
  // response.
  uint64_t head_start() const { return head_start_; }
  int interim_responses() const { return interim_responses_; }

 private:
  enum class State {
    kStatusLine,
    kHeaders,
    kBodyLength,
    kBodyUntilClose,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailers,
    kDone,
    kError
  };
  bool Fail(std::string message);
  bool OnLine(std::string_view line);
  bool OnHeadersEnd();

  BodyCallback on_body_;
  State state_ = State::kStatusLine;
  std::string line_;  // partial line being assembled
  int status_ = 0;
  bool keep_alive_ = true;
  bool chunked_ = false;
  int64_t content_length_ = -1;
  uint64_t remaining_ = 0;
  size_t consumed_ = 0;
  uint64_t line_start_ = 0;  // where the line being assembled starts in the bytes fed
  uint64_t head_start_ = 0;
  int interim_responses_ = 0;
  std::vector<HttpHeader> headers_;
  std::string error_;
};

struct HttpRequest {
  std::string method;
  std::string target;
  std::vector<HttpHeader> headers;
  std::string body;
  bool keep_alive = true;
  std::string Header(std::string_view lower_name) const;
};

class HttpRequestParser {
 public:
  enum class Result { kNeedMore, kRequest, kError };
  // Appends bytes; call Next() until it returns kNeedMore.
  void Append(std::string_view bytes) { buffer_.append(bytes); }
  Result Next(HttpRequest* request);
  const std::string& error() const { return error_; }

 private:
  std::string buffer_;
  std::string error_;
};

}  // namespace gpufrac::bench
