#include "bench/http_parser.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace gpufrac::bench {
namespace {

constexpr size_t kMaxLine = 64 * 1024;  // a header line longer than this is an attack
constexpr size_t kMaxRequestHead = 64 * 1024;
constexpr size_t kMaxRequestBody = 64 * 1024 * 1024;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool ContainsToken(std::string_view value, std::string_view token) {
  return Lower(value).find(token) != std::string::npos;
}

bool ParseHeaderLine(std::string_view line, HttpHeader* header) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  header->name = Lower(Trim(line.substr(0, colon)));
  header->value = std::string(Trim(line.substr(colon + 1)));
  return true;
}

}  // namespace

bool HttpResponseParser::Fail(std::string message) {
  state_ = State::kError;
  error_ = std::move(message);
  return false;
}

bool HttpResponseParser::Feed(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    switch (state_) {
      case State::kDone:
        consumed_ += pos;
        return true;
      case State::kError:
        return false;
      case State::kBodyLength: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - pos));
        on_body_(bytes.substr(pos, n));
        pos += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDone;
        break;
      }
      case State::kBodyUntilClose:
        on_body_(bytes.substr(pos));
        pos = bytes.size();
        break;
      case State::kChunkData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - pos));
        on_body_(bytes.substr(pos, n));
        pos += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kChunkDataEnd;
        break;
      }
      default: {  // line-oriented states
        if (line_.empty()) line_start_ = consumed_ + pos;
        size_t nl = bytes.find('\n', pos);
        if (nl == std::string_view::npos) {
          line_.append(bytes.substr(pos));
          pos = bytes.size();
          if (line_.size() > kMaxLine) return Fail("HTTP line too long");
          break;
        }
        line_.append(bytes.substr(pos, nl - pos));
        pos = nl + 1;
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        std::string line = std::move(line_);
        line_.clear();
        if (!OnLine(line)) return false;
        break;
      }
    }
  }
  consumed_ += pos;
  return state_ != State::kError;
}

bool HttpResponseParser::OnLine(std::string_view line) {
  switch (state_) {
    case State::kStatusLine: {
      // "HTTP/1.1 200 OK"
      if (line.empty()) return true;  // tolerate a stray CRLF before the status line
      if (line.substr(0, 5) != "HTTP/") return Fail("malformed HTTP status line");
      head_start_ = line_start_;
      size_t sp = line.find(' ');
      if (sp == std::string_view::npos || line.size() < sp + 4) {
        return Fail("malformed HTTP status line");
      }
      auto [p, ec] = std::from_chars(line.data() + sp + 1, line.data() + sp + 4, status_);
      if (ec != std::errc()) return Fail("malformed HTTP status code");
      keep_alive_ = line.substr(0, sp) == "HTTP/1.1";
      state_ = State::kHeaders;
      return true;
    }
    case State::kHeaders: {
      if (line.empty()) return OnHeadersEnd();
      HttpHeader header;
      if (!ParseHeaderLine(line, &header)) return Fail("malformed HTTP header");
      headers_.push_back(std::move(header));
      return true;
    }
    case State::kChunkSize: {
      std::string_view size_text = Trim(line.substr(0, line.find(';')));
      uint64_t size = 0;
      auto [p, ec] =
          std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
      if (ec != std::errc() || size_text.empty()) return Fail("malformed chunk size");
      remaining_ = size;
      state_ = size == 0 ? State::kTrailers : State::kChunkData;
      return true;
    }
    case State::kChunkDataEnd:
      if (!line.empty()) return Fail("missing CRLF after chunk data");
      state_ = State::kChunkSize;
      return true;
    case State::kTrailers:
      if (line.empty()) state_ = State::kDone;
      return true;
    default:
      return Fail("internal parser state error");
  }
}

bool HttpResponseParser::OnHeadersEnd() {
  for (const HttpHeader& h : headers_) {
    if (h.name == "content-length") {
      uint64_t length = 0;
      auto [p, ec] = std::from_chars(h.value.data(), h.value.data() + h.value.size(), length);
      if (ec != std::errc()) return Fail("malformed Content-Length");
      content_length_ = static_cast<int64_t>(length);
    } else if (h.name == "transfer-encoding") {
      chunked_ = ContainsToken(h.value, "chunked");
    } else if (h.name == "connection") {
      if (ContainsToken(h.value, "close")) keep_alive_ = false;
      if (ContainsToken(h.value, "keep-alive")) keep_alive_ = true;
    }
  }
  if (status_ >= 100 && status_ < 200 && status_ != 101) {
    // An interim response: the final one follows on the same connection.
    ++interim_responses_;
    status_ = 0;
    keep_alive_ = true;
    chunked_ = false;
    content_length_ = -1;
    headers_.clear();
    state_ = State::kStatusLine;
  } else if (status_ == 101) {
    keep_alive_ = false;  // the connection now speaks another protocol: never reused
    state_ = State::kDone;
  } else if (status_ == 204 || status_ == 304) {
    state_ = State::kDone;
  } else if (chunked_) {
    state_ = State::kChunkSize;
  } else if (content_length_ >= 0) {
    remaining_ = static_cast<uint64_t>(content_length_);
    state_ = remaining_ == 0 ? State::kDone : State::kBodyLength;
  } else {
    keep_alive_ = false;
    state_ = State::kBodyUntilClose;
  }
  return true;
}

bool HttpResponseParser::FeedEof() {
  if (state_ == State::kBodyUntilClose) {
    state_ = State::kDone;
    return true;
  }
  if (state_ == State::kDone) return true;
  if (state_ != State::kError) Fail("connection closed before the response was complete");
  return false;
}

std::string HttpRequest::Header(std::string_view lower_name) const {
  for (const HttpHeader& h : headers) {
    if (h.name == lower_name) return h.value;
  }
  return "";
}

HttpRequestParser::Result HttpRequestParser::Next(HttpRequest* request) {
  size_t head_end = buffer_.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (buffer_.size() > kMaxRequestHead) {
      error_ = "request head too large";
      return Result::kError;
    }
    return Result::kNeedMore;
  }
  std::string_view head(buffer_.data(), head_end);
  size_t line_end = head.find("\r\n");
  std::string_view request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) {
    error_ = "malformed request line";
    return Result::kError;
  }
  HttpRequest parsed;
  parsed.method = std::string(request_line.substr(0, sp1));
  parsed.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  parsed.keep_alive = request_line.substr(sp2 + 1) == "HTTP/1.1";
  size_t content_length = 0;
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    HttpHeader header;
    if (!ParseHeaderLine(head.substr(pos, end - pos), &header)) {
      error_ = "malformed header";
      return Result::kError;
    }
    if (header.name == "content-length") {
      auto [p, ec] = std::from_chars(header.value.data(), header.value.data() + header.value.size(),
                                     content_length);
      if (ec != std::errc() || content_length > kMaxRequestBody) {
        error_ = "bad Content-Length";
        return Result::kError;
      }
    } else if (header.name == "connection") {
      if (ContainsToken(header.value, "close")) parsed.keep_alive = false;
      if (ContainsToken(header.value, "keep-alive")) parsed.keep_alive = true;
    } else if (header.name == "transfer-encoding") {
      error_ = "chunked request bodies are not supported";
      return Result::kError;
    }
    parsed.headers.push_back(std::move(header));
    pos = end + 2;
  }
  size_t total = head_end + 4 + content_length;
  if (buffer_.size() < total) return Result::kNeedMore;
  parsed.body = buffer_.substr(head_end + 4, content_length);
  buffer_.erase(0, total);
  *request = std::move(parsed);
  return Result::kRequest;
}

}  // namespace gpufrac::bench
