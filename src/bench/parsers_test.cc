// The HTTP and SSE parsers against byte streams cut at every possible boundary.
#include <gtest/gtest.h>

#include "bench/http_parser.h"
#include "bench/sse_parser.h"

namespace gpufrac::bench {
namespace {

struct Parsed {
  bool ok = true;
  bool complete = false;
  int status = 0;
  bool keep_alive = false;
  std::string body;
};

// Feeds `wire` split into two pieces at `cut` (and then the rest byte by byte when `bytewise`).
Parsed ParseResponse(const std::string& wire, size_t cut, bool eof = false) {
  Parsed out;
  HttpResponseParser parser([&](std::string_view d) { out.body.append(d); });
  out.ok = parser.Feed(std::string_view(wire).substr(0, cut)) &&
           parser.Feed(std::string_view(wire).substr(cut));
  if (eof) out.ok = parser.FeedEof() && out.ok;
  out.complete = parser.complete();
  out.status = parser.status();
  out.keep_alive = parser.keep_alive();
  return out;
}

TEST(HttpResponseParser, ContentLengthAtEveryCut) {
  std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world";
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    Parsed p = ParseResponse(wire, cut);
    ASSERT_TRUE(p.ok) << cut;
    EXPECT_TRUE(p.complete) << cut;
    EXPECT_EQ(p.status, 200);
    EXPECT_TRUE(p.keep_alive);
    EXPECT_EQ(p.body, "hello world") << cut;
  }
}

TEST(HttpResponseParser, ChunkedAtEveryCut) {
  std::string wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    Parsed p = ParseResponse(wire, cut);
    ASSERT_TRUE(p.ok) << cut;
    EXPECT_TRUE(p.complete) << cut;
    EXPECT_EQ(p.body, "hello 0123456789") << cut;
  }
}

TEST(HttpResponseParser, CloseDelimitedBodyEndsAtEof) {
  std::string wire = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstream until close";
  Parsed p = ParseResponse(wire, 20, /*eof=*/true);
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.complete);
  EXPECT_FALSE(p.keep_alive);
  EXPECT_EQ(p.body, "stream until close");
}

TEST(HttpResponseParser, InterimResponsesAreSkippedAtEveryCut) {
  const std::string interim =
      "\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
  const std::string wire = interim + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    HttpResponseParser parser([](std::string_view) {});
    ASSERT_TRUE(parser.Feed(std::string_view(wire).substr(0, cut)));
    ASSERT_TRUE(parser.Feed(std::string_view(wire).substr(cut)));
    EXPECT_TRUE(parser.complete()) << cut;
    EXPECT_EQ(parser.status(), 200) << cut;
    EXPECT_EQ(parser.interim_responses(), 2) << cut;
    EXPECT_EQ(parser.head_start(), interim.size()) << cut;
    ASSERT_EQ(parser.headers().size(), 1u) << "only the final response's headers";
    EXPECT_EQ(parser.headers()[0].name, "content-length");
  }
}

TEST(HttpResponseParser, BytesAfterTheResponseAreNotConsumed) {
  const std::string response = "HTTP/1.1 204 No Content\r\n\r\n";
  HttpResponseParser parser([](std::string_view) {});
  ASSERT_TRUE(parser.Feed(response + "HTTP/1.1 200 OK\r\n"));
  EXPECT_TRUE(parser.complete());
  EXPECT_EQ(parser.consumed(), response.size());
  HttpResponseParser upgrade([](std::string_view) {});
  ASSERT_TRUE(upgrade.Feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"));
  EXPECT_TRUE(upgrade.complete());
  EXPECT_FALSE(upgrade.keep_alive()) << "a switched connection is never reused";
}

TEST(HttpResponseParser, TruncatedResponseIsAnError) {
  Parsed p = ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 5, true);
  EXPECT_FALSE(p.ok);
  EXPECT_FALSE(p.complete);
}

TEST(HttpResponseParser, MalformedInputIsAnError) {
  EXPECT_FALSE(ParseResponse("SMTP ready\r\n\r\n", 3).ok);
  EXPECT_FALSE(ParseResponse("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", 3).ok);
  EXPECT_FALSE(ParseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 3).ok);
  EXPECT_FALSE(ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 3).ok);
}

TEST(HttpResponseParser, Http10WithoutKeepAliveCloses) {
  Parsed p = ParseResponse("HTTP/1.0 503 Busy\r\nContent-Length: 2\r\n\r\nno", 4);
  EXPECT_TRUE(p.complete);
  EXPECT_EQ(p.status, 503);
  EXPECT_FALSE(p.keep_alive);
}

TEST(HttpRequestParser, ParsesPipelinedRequests) {
  HttpRequestParser parser;
  std::string wire =
      "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\nX-Request-Id: 7\r\n\r\n{}"
      "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
  HttpRequest request;
  for (char c : wire) parser.Append(std::string_view(&c, 1));
  ASSERT_EQ(parser.Next(&request), HttpRequestParser::Result::kRequest);
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/v1/chat/completions");
  EXPECT_EQ(request.body, "{}");
  EXPECT_EQ(request.Header("x-request-id"), "7");
  EXPECT_TRUE(request.keep_alive);
  ASSERT_EQ(parser.Next(&request), HttpRequestParser::Result::kRequest);
  EXPECT_EQ(request.target, "/health");
  EXPECT_FALSE(request.keep_alive);
  EXPECT_EQ(parser.Next(&request), HttpRequestParser::Result::kNeedMore);
}

TEST(HttpRequestParser, RejectsGarbage) {
  HttpRequestParser parser;
  parser.Append("garbage\r\n\r\n");
  HttpRequest request;
  EXPECT_EQ(parser.Next(&request), HttpRequestParser::Result::kError);
}

std::vector<SseEvent> ParseSse(const std::string& wire, size_t piece) {
  std::vector<SseEvent> events;
  SseParser parser([&](const SseEvent& e) { events.push_back(e); });
  for (size_t i = 0; i < wire.size(); i += piece) parser.Feed(wire.substr(i, piece));
  parser.Finish();
  return events;
}

TEST(SseParser, EventsCommentsAndMultilineDataInAnyPieces) {
  std::string wire =
      ": keep-alive\n\n"
      "data: {\"a\":1}\n\n"
      "event: delta\r\ndata: line1\r\ndata:line2\r\n\r\n"
      ": only a comment\n\n"
      "id: 3\nretry: 10\ndata: [DONE]\n\n";
  for (size_t piece = 1; piece <= wire.size(); ++piece) {
    std::vector<SseEvent> events = ParseSse(wire, piece);
    ASSERT_EQ(events.size(), 3u) << piece;
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[1].event, "delta");
    EXPECT_EQ(events[1].data, "line1\nline2");
    EXPECT_EQ(events[2].data, "[DONE]");
  }
}

TEST(SseParser, UnterminatedLastEventIsDeliveredAtFinish) {
  std::vector<SseEvent> events = ParseSse("data: x\n\ndata: y\n", 3);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].data, "y");
}

}  // namespace
}  // namespace gpufrac::bench
