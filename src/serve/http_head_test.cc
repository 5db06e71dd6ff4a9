// The gateway's request head parser and its error responses.
#include "serve/http_head.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace gpufrac::serve {
namespace {

TEST(ServeHttpHeadTest, ParsesAHeadBeforeItsBody) {
  const std::string req =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
      "Authorization: Bearer k\r\n\r\nhel";
  RequestHead head;
  std::string error;
  ASSERT_EQ(ParseRequestHead(req, 16384, &head, &error), HeadResult::kDone);
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.target, "/v1/chat/completions");
  EXPECT_EQ(head.content_length, 5u);
  EXPECT_EQ(head.Header("authorization"), "Bearer k");
  EXPECT_TRUE(head.keep_alive);
  EXPECT_EQ(head.head_bytes, req.size() - 3);
}

TEST(ServeHttpHeadTest, ConflictingContentLengthsAreRefused) {
  RequestHead head;
  std::string error;
  // Two lengths: a proxy in front that took the other one would end the body elsewhere.
  EXPECT_EQ(ParseRequestHead("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n",
                             16384, &head, &error),
            HeadResult::kBad);
  EXPECT_EQ(error, "conflicting Content-Length headers");
  // The same length twice is one length.
  ASSERT_EQ(ParseRequestHead("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                             16384, &head, &error),
            HeadResult::kDone);
  EXPECT_EQ(head.content_length, 5u);
}

TEST(ServeHttpHeadTest, KnowsAnHttp10Client) {
  RequestHead head;
  std::string error;
  ASSERT_EQ(ParseRequestHead("GET / HTTP/1.0\r\n\r\n", 16384, &head, &error), HeadResult::kDone);
  EXPECT_TRUE(head.http10);
  EXPECT_FALSE(head.keep_alive);
  ASSERT_EQ(ParseRequestHead("GET / HTTP/1.1\r\n\r\n", 16384, &head, &error), HeadResult::kDone);
  EXPECT_FALSE(head.http10);
}

TEST(ServeHttpHeadTest, EveryPrefixNeedsMore) {
  const std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t n = 0; n < req.size(); ++n) {
    RequestHead head;
    std::string error;
    EXPECT_EQ(ParseRequestHead(req.substr(0, n), 16384, &head, &error), HeadResult::kNeedMore) << n;
  }
}

TEST(ServeHttpHeadTest, RefusesBrokenHeads) {
  RequestHead head;
  std::string error;
  EXPECT_EQ(ParseRequestHead("hello\r\n\r\n", 16384, &head, &error), HeadResult::kBad);
  EXPECT_EQ(ParseRequestHead("GET / SMTP\r\n\r\n", 16384, &head, &error), HeadResult::kBad);
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\r\nnocolon\r\n\r\n", 16384, &head, &error),
            HeadResult::kBad);
  EXPECT_EQ(ParseRequestHead("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 16384, &head, &error),
            HeadResult::kBad);
  EXPECT_EQ(ParseRequestHead("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 16384, &head,
                             &error),
            HeadResult::kChunked);
  EXPECT_EQ(ParseRequestHead(std::string(20000, 'a'), 16384, &head, &error), HeadResult::kTooLarge);
}

TEST(ServeHttpHeadTest, RefusesBareLineBreaksAndNulInsideAHead) {
  // A replica that ends lines at a bare LF would read a second request out of these.
  const std::string lf = "GET / HTTP/1.1\r\nX-Request-Id: a\nContent-Length: 5\r\n\r\n";
  const std::string cr = "GET / HTTP/1.1\r\nAccept: a\rb\r\n\r\n";
  const std::string nul = std::string("GET / HTTP/1.1\r\nAccept: a") + '\0' + "b\r\n\r\n";
  const std::string line = "GET /\nx HTTP/1.1\r\n\r\n";
  for (const std::string& req : {lf, cr, nul, line}) {
    RequestHead head;
    std::string error;
    EXPECT_EQ(ParseRequestHead(req, 16384, &head, &error), HeadResult::kBad) << req;
    EXPECT_NE(error.find("bare CR, LF or NUL"), std::string::npos) << error;
  }
}

TEST(ServeHttpHeadTest, ConnectionClose) {
  RequestHead head;
  std::string error;
  ASSERT_EQ(ParseRequestHead("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 16384, &head, &error),
            HeadResult::kDone);
  EXPECT_FALSE(head.keep_alive);
  ASSERT_EQ(ParseRequestHead("GET / HTTP/1.0\r\n\r\n", 16384, &head, &error), HeadResult::kDone);
  EXPECT_FALSE(head.keep_alive);
}

TEST(ServeHttpHeadTest, ErrorResponsesAreOpenAiShapedWithRetryAfter) {
  const std::string r = ErrorResponse(429, "busy", true, 1);
  EXPECT_EQ(r.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0), 0u);
  EXPECT_NE(r.find("Retry-After: 1\r\n"), std::string::npos);
  const auto body = nlohmann::json::parse(r.substr(r.find("\r\n\r\n") + 4));
  EXPECT_EQ(body["error"]["message"], "busy");
  EXPECT_EQ(body["error"]["type"], "rate_limit_error");
  EXPECT_EQ(body["error"]["code"], 429);
}

TEST(ServeHttpHeadTest, AHeadForAnHttp10ClientLosesItsFramingAndEndsWithTheClose) {
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTRANSFER-encoding: chunked\r\n"
      "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTrailer: X-Done\r\n"
      "X-Request-Id: 7\r\n\r\n1a\r\ndata: {}";
  EXPECT_EQ(CloseDelimitedHead(head),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: 7\r\n"
            "Connection: close\r\n\r\n");
  // Bare LF line ends come out as CRLF; a Content-Length beside chunked framing goes too.
  EXPECT_EQ(CloseDelimitedHead("HTTP/1.1 200 OK\nContent-Length: 9\nX-A: b\n\nrest"),
            "HTTP/1.1 200 OK\r\nX-A: b\r\nConnection: close\r\n\r\n");
}

TEST(ServeHttpHeadTest, AnHttp10ClientStillLearnsOfTheCodingsBesideChunked) {
  // Only the chunked framing is taken off for the 1.0 client; the body stays gzipped, so the
  // head must still say so, now as a content coding.
  EXPECT_EQ(CloseDelimitedHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
                               "X-A: b\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Encoding: gzip\r\n"
            "Connection: close\r\n\r\n");
  // Codings already in Content-Encoding were applied first, so the transfer codings follow them.
  EXPECT_EQ(CloseDelimitedHead("HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n"
                               "Transfer-Encoding: Deflate ,gzip\r\nTransfer-Encoding: chunked\r\n"
                               "X-A: b\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Encoding: br, Deflate, gzip\r\n"
            "Connection: close\r\n\r\n");
  // Plain chunked (any case) leaves an existing Content-Encoding as the replica sent it.
  EXPECT_EQ(CloseDelimitedHead("HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n"
                               "Transfer-Encoding: CHUNKED\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nConnection: close\r\n\r\n");
}

}  // namespace
}  // namespace gpufrac::serve
