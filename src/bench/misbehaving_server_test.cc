// The load generator against servers that misbehave in ways the synthetic server does not: each
// must end as the failure it is (or, for the controls, as a success), never as a success that
// hides it, and never crash the client.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "bench/canned_server.h"
#include "bench/loadgen.h"
#include "bench/metrics.h"
#include "bench/prompts.h"

namespace gpufrac::bench {
namespace {

using testing::CannedServer;

constexpr const char* kSseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
constexpr const char* kToken =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w \"},\"finish_reason\":null}]}\n\n";
constexpr const char* kLastChunk =
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";

Workload OneUser(const std::string& url, int64_t requests, bool stream = true) {
  Workload w;
  EXPECT_TRUE(ParseTargetUrl(url, &w.target).ok());
  w.request.model = "m";
  w.request.stream = stream;
  w.prompts = MakeSyntheticPrompts({"a", "b", "c"}, {3, 0}, {3, 0});
  w.load.concurrency = 1;
  w.load.requests = requests;
  w.timeout_s = 10;
  return w;
}

std::string WithLength(const std::string& content_type, const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST(MisbehavingServer, CloseDelimitedStreamCutBeforeItsEndFails) {
  CannedServer cut(std::string(kSseHead) + kToken + kToken, /*close_after=*/true);
  MetricsSummary s = Summarize(RunLoad({OneUser(cut.url(), 3)}, {}).records, {});
  EXPECT_EQ(s.ok, 0u);
  EXPECT_EQ(s.errors_by_kind["connection_closed"], 3u);
  EXPECT_NE(s.first_error.find("before the stream's end"), std::string::npos) << s.first_error;

  // The controls: the same framing ended by "[DONE]", or by a finish_reason alone, is whole.
  CannedServer done(std::string(kSseHead) + kToken + kToken + "data: [DONE]\n\n", true);
  EXPECT_EQ(Summarize(RunLoad({OneUser(done.url(), 3)}, {}).records, {}).ok, 3u);
  CannedServer finished(std::string(kSseHead) + kToken + kLastChunk, true);
  EXPECT_EQ(Summarize(RunLoad({OneUser(finished.url(), 3)}, {}).records, {}).ok, 3u);
}

TEST(MisbehavingServer, StreamAnsweredWithAPlainBodyFails) {
  // An error object with status 200 where a stream was asked for: the server's words are kept.
  CannedServer error(WithLength("application/json", R"({"error":{"message":"model overloaded"}})"),
                     false);
  MetricsSummary s = Summarize(RunLoad({OneUser(error.url(), 2)}, {}).records, {});
  EXPECT_EQ(s.errors_by_kind["stream_error"], 2u);
  EXPECT_NE(s.first_error.find("model overloaded"), std::string::npos) << s.first_error;

  CannedServer html(WithLength("text/html", "<html>maintenance</html>"), false);
  s = Summarize(RunLoad({OneUser(html.url(), 2)}, {}).records, {});
  EXPECT_EQ(s.errors_by_kind["protocol"], 2u);
  EXPECT_NE(s.first_error.find("no SSE event"), std::string::npos) << s.first_error;
}

TEST(MisbehavingServer, BytesAfterAResponseAreNotReadAsTheNextOne) {
  const std::string body =
      R"({"choices":[{"index":0,"message":{"content":"a b"},"finish_reason":"stop"}],)"
      R"("usage":{"prompt_tokens":3,"completion_tokens":2}})";
  CannedServer stray(WithLength("application/json", body) + "HTTP/1.1 500 Stray\r\n\r\n", false);
  RunResult result = RunLoad({OneUser(stray.url(), 4, /*stream=*/false)}, {});
  MetricsSummary s = Summarize(result.records, {});
  EXPECT_EQ(s.ok, 4u) << s.first_error;
  EXPECT_EQ(result.connections_opened, 4u);  // none was reused after its stray bytes
}

TEST(MisbehavingServer, WholeAnswerWithoutUsageCountsItsWords) {
  const std::string body = R"({"choices":[{"index":0,"message":{"content":"one two  three\nfour"},)"
                           R"("finish_reason":"stop"}]})";
  CannedServer server(WithLength("application/json", body), false);
  MetricsSummary s =
      Summarize(RunLoad({OneUser(server.url(), 3, /*stream=*/false)}, {}).records, {});
  EXPECT_EQ(s.ok, 3u);
  EXPECT_EQ(s.output_tokens.mean, 4);
  EXPECT_EQ(s.output_token_source, "response words");
  EXPECT_EQ(s.usage_missing, 3u);
}

TEST(MisbehavingServer, ConnectFailuresFoundBeforeConnectingDoNotRecurse) {
  // A CA file that is not PEM fails every request before any socket is opened. Each failure
  // used to be delivered inside the send of the request, and the next request was sent from
  // that delivery: a closed loop recursed once per request until the stack ran out.
  const auto ca = std::filesystem::temp_directory_path() / "gpufrac-bench-bad-ca.pem";
  std::ofstream(ca) << "not a certificate\n";
  Workload w = OneUser("https://127.0.0.1:1", 30'000);
  w.target.ca_file = ca.string();
  MetricsSummary s = Summarize(RunLoad({w}, {}).records, {});
  std::filesystem::remove(ca);
  EXPECT_EQ(s.errors_by_kind["connect"], 30'000u);
  EXPECT_NE(s.first_error.find("TLS set-up"), std::string::npos) << s.first_error;
}

}  // namespace
}  // namespace gpufrac::bench
