#include "serve/http_head.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

namespace gpufrac::serve {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool HasToken(const std::string& value, std::string_view token) {
  return Lower(value).find(token) != std::string::npos;
}

const char* ErrorType(int status) {
  if (status == 401) return "authentication_error";
  if (status == 404) return "not_found_error";
  if (status == 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

}  // namespace

std::string RequestHead::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return "";
}

HeadResult ParseRequestHead(std::string_view buffer, size_t max_head_bytes, RequestHead* head,
                            std::string* error) {
  const size_t end = buffer.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buffer.size() > max_head_bytes) return HeadResult::kTooLarge;
    return HeadResult::kNeedMore;
  }
  if (end + 4 > max_head_bytes) return HeadResult::kTooLarge;
  const std::string_view text = buffer.substr(0, end);
  const size_t line_end = std::min(text.find("\r\n"), text.size());
  const std::string_view line = text.substr(0, line_end);
  if (line.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    *error = "request line with a bare CR, LF or NUL";
    return HeadResult::kBad;
  }
  const size_t sp1 = line.find(' ');
  const size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1 || line.substr(sp2 + 1).rfind("HTTP/1.", 0)) {
    *error = "malformed request line";
    return HeadResult::kBad;
  }
  RequestHead h;
  h.method = std::string(line.substr(0, sp1));
  h.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  h.keep_alive = line.substr(sp2 + 1) == "HTTP/1.1";
  h.http10 = line.substr(sp2 + 1) == "HTTP/1.0";
  bool has_length = false;
  size_t pos = line_end + 2;
  while (pos < text.size()) {
    size_t eol = text.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view field = text.substr(pos, eol - pos);
    if (field.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
      // A bare CR or LF would end the line for some replica parsers and not for others (a
      // request smuggled inside a header); NUL has no place in a header either.
      *error = "header line with a bare CR, LF or NUL";
      return HeadResult::kBad;
    }
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      *error = "malformed header line";
      return HeadResult::kBad;
    }
    std::string name = Lower(field.substr(0, colon));
    std::string value(Trim(field.substr(colon + 1)));
    if (name == "content-length") {
      uint64_t length = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (ec != std::errc() || p != value.data() + value.size()) {
        *error = "bad Content-Length";
        return HeadResult::kBad;
      }
      // Two different lengths: a proxy in front may have used the other one, and the body's end
      // would differ between it and us (request smuggling). RFC 9112 6.3: refuse.
      if (has_length && length != h.content_length) {
        *error = "conflicting Content-Length headers";
        return HeadResult::kBad;
      }
      has_length = true;
      h.content_length = length;
    } else if (name == "transfer-encoding" && HasToken(value, "chunked")) {
      return HeadResult::kChunked;
    } else if (name == "connection") {
      if (HasToken(value, "close")) h.keep_alive = false;
      if (HasToken(value, "keep-alive")) h.keep_alive = true;
    }
    h.headers.emplace_back(std::move(name), std::move(value));
    pos = eol + 2;
  }
  h.head_bytes = end + 4;
  *head = std::move(h);
  return HeadResult::kDone;
}

const char* StatusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

std::string Response(int status, std::string_view content_type, std::string_view body,
                     bool keep_alive, const std::vector<std::string>& extra_headers) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + StatusText(status) + "\r\n";
  out += "Content-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const std::string& h : extra_headers) out += h + "\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string ErrorBody(int status, const std::string& message) {
  nlohmann::json j = {
      {"error", {{"message", message}, {"type", ErrorType(status)}, {"code", status}}}};
  return j.dump() + "\n";
}

std::string ErrorResponse(int status, const std::string& message, bool keep_alive,
                          int retry_after_s) {
  std::vector<std::string> extra;
  if (retry_after_s > 0) extra.push_back("Retry-After: " + std::to_string(retry_after_s));
  return Response(status, "application/json", ErrorBody(status, message), keep_alive, extra);
}

std::string CloseDelimitedHead(std::string_view bytes) {
  static constexpr std::string_view kFraming[] = {"transfer-encoding", "content-length", "trailer",
                                                  "connection", "keep-alive"};
  const auto trim = [](std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  };
  const auto lower = [](std::string_view v) {
    std::string out(v);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  std::string out;
  // Only the chunked framing is undone for the HTTP/1.0 client (it cannot read it); any other
  // transfer coding ("gzip, chunked") is still on the body, and 1.0 has no Transfer-Encoding to
  // say so: it goes out as a content coding, after those of Content-Encoding (applied first).
  std::vector<std::string> codings, content_lines;
  bool transfer_coded = false;
  size_t pos = 0;
  bool status_line = true;
  while (pos < bytes.size()) {
    const size_t eol = bytes.find('\n', pos);
    const size_t next = eol == std::string_view::npos ? bytes.size() : eol + 1;
    std::string_view line = bytes.substr(pos, next - pos);
    pos = next;
    std::string_view content = line;
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
      content.remove_suffix(1);
    }
    if (content.empty() && !status_line) break;  // the blank line that ends the head
    if (!status_line) {
      const size_t colon = content.find(':');
      const std::string name = lower(content.substr(0, colon));
      const std::string_view value =
          colon == std::string_view::npos ? std::string_view() : content.substr(colon + 1);
      const bool transfer = name == "transfer-encoding";
      if (transfer || name == "content-encoding") {
        for (size_t start = 0; start <= value.size();) {
          size_t comma = value.find(',', start);
          if (comma == std::string_view::npos) comma = value.size();
          const std::string_view coding = trim(value.substr(start, comma - start));
          const std::string low = lower(coding);
          if (!coding.empty() && low != "chunked" && low != "identity") {
            codings.emplace_back(coding);
            transfer_coded = transfer_coded || transfer;
          }
          start = comma + 1;
        }
      }
      if (name == "content-encoding") {
        content_lines.emplace_back(content);
        continue;
      }
      if (std::find(std::begin(kFraming), std::end(kFraming), name) != std::end(kFraming)) {
        continue;
      }
    }
    status_line = false;
    out.append(content);
    out += "\r\n";
  }
  if (transfer_coded) {
    std::string joined;
    for (const std::string& c : codings) joined += (joined.empty() ? "" : ", ") + c;
    out += "Content-Encoding: " + joined + "\r\n";
  } else {
    // Nothing to add: Content-Encoding goes out as the replica sent it.
    for (const std::string& l : content_lines) out += l + "\r\n";
  }
  out += "Connection: close\r\n\r\n";
  return out;
}

}  // namespace gpufrac::serve
