// The gateway's HTTP/1.1 edge without I/O: parsing a client's request head (so that the body size
// is checked before the body is read) and writing the gateway's own responses, every error with
// the OpenAI-style JSON body {"error": {"message", "type", "code"}}.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gpufrac::serve {

struct RequestHead {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool http10 = false;    // an HTTP/1.0 client: no interim (1xx) responses to it
  size_t head_bytes = 0;  // including the blank line

  std::string Header(std::string_view lower_name) const;
};

enum class HeadResult { kNeedMore, kDone, kBad, kTooLarge, kChunked };

// Parses a head at the start of `buffer` (headers over max_head_bytes: kTooLarge).
HeadResult ParseRequestHead(std::string_view buffer, size_t max_head_bytes, RequestHead* head,
                            std::string* error);

// A whole response with a Content-Length body.
std::string Response(int status, std::string_view content_type, std::string_view body,
                     bool keep_alive, const std::vector<std::string>& extra_headers = {});
// The JSON error body and its response. retry_after_s > 0 adds Retry-After.
std::string ErrorBody(int status, const std::string& message);
std::string ErrorResponse(int status, const std::string& message, bool keep_alive,
                          int retry_after_s = 0);
const char* StatusText(int status);

// A replica's response head rewritten for an HTTP/1.0 client, which cannot read chunked framing
// (RFC 9112 7.1): the gateway de-chunks the body and ends it with the connection, so the framing
// fields (Transfer-Encoding, Content-Length, Trailer, Connection, Keep-Alive) are dropped and
// "Connection: close" is added. `bytes` starts with the head; whatever follows it is left out.
std::string CloseDelimitedHead(std::string_view bytes);

}  // namespace gpufrac::serve
