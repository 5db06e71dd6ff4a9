// Statistics, per-request metrics, SLOs and the SLA search on hand-made data with known answers.
#include "bench/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "bench/openai_protocol.h"
#include "bench/report.h"
#include "bench/slo.h"
#include "bench/stats.h"
#include "bench/sweep.h"

namespace gpufrac::bench {
namespace {

constexpr int64_t kMs = 1'000'000;

TEST(Stats, PercentilesInterpolateLikeNumpy) {
  // numpy.percentile([1, 2, 3, 4, 10], p): p50 = 3, p90 = 7.6, p99 = 9.76, p1 = 1.04, p25 = 2.
  Distribution d = Describe({10, 1, 3, 2, 4});
  EXPECT_EQ(d.count, 5u);
  EXPECT_DOUBLE_EQ(d.Percentile(50), 3);
  EXPECT_NEAR(d.Percentile(90), 7.6, 1e-12);
  EXPECT_NEAR(d.Percentile(99), 9.76, 1e-12);
  EXPECT_NEAR(d.Percentile(1), 1.04, 1e-12);
  EXPECT_DOUBLE_EQ(d.Percentile(25), 2);
  EXPECT_DOUBLE_EQ(d.mean, 4);
  EXPECT_DOUBLE_EQ(d.min, 1);
  EXPECT_DOUBLE_EQ(d.max, 10);
  EXPECT_NEAR(d.std, std::sqrt(10.0), 1e-12);  // population std: mean of squares 50/5
  EXPECT_TRUE(std::isnan(d.Percentile(42)));
  EXPECT_EQ(Describe({}).count, 0u);
  EXPECT_DOUBLE_EQ(Describe({7}).Percentile(99), 7);
}

RequestRecord Streamed(int64_t start, std::vector<int64_t> content, int64_t end, int tokens) {
  RequestRecord r;
  r.planned_ns = r.dispatched_ns = r.start_ns = start;
  r.content_ns = std::move(content);
  r.end_ns = end;
  r.completion_tokens = tokens;
  r.prompt_tokens = 10;
  r.http_status = 200;
  return r;
}

TEST(Metrics, RequestMetricsFollowGenAiPerfDefinitions) {
  // Start at 0, content at 100, 110, 130 ms, end at 131 ms, 5 tokens by usage (events carried
  // more than one token each).
  RequestRecord r = Streamed(0, {100 * kMs, 110 * kMs, 130 * kMs}, 131 * kMs, 5);
  RequestMetrics m = ComputeRequestMetrics(r);
  EXPECT_DOUBLE_EQ(*m.ttft_ms, 100);
  EXPECT_DOUBLE_EQ(*m.ttst_ms, 10);
  EXPECT_DOUBLE_EQ(m.latency_ms, 131);
  EXPECT_DOUBLE_EQ(*m.itl_ms, (131.0 - 100.0) / 4);
  EXPECT_DOUBLE_EQ(*m.output_tokens_per_user, 1000.0 / ((131.0 - 100.0) / 4));
  ASSERT_EQ(m.icl_ms.size(), 2u);
  EXPECT_DOUBLE_EQ(m.icl_ms[0], 10);
  EXPECT_DOUBLE_EQ(m.icl_ms[1], 20);
}

TEST(Metrics, OneTokenHasNoItlAndNoUsageFallsBackToEvents) {
  RequestRecord one = Streamed(0, {5 * kMs}, 6 * kMs, 1);
  EXPECT_FALSE(ComputeRequestMetrics(one).itl_ms.has_value());
  EXPECT_FALSE(ComputeRequestMetrics(one).ttst_ms.has_value());
  RequestRecord no_usage = Streamed(0, {1 * kMs, 2 * kMs, 3 * kMs}, 3 * kMs, -1);
  EXPECT_EQ(no_usage.OutputTokens(), 3);
  MetricsSummary s = Summarize({no_usage}, {});
  EXPECT_EQ(s.usage_missing, 1u);
  EXPECT_EQ(s.output_token_source, "content events");
}

// An embedding has no output tokens: its usage (prompt tokens only) lacks nothing, and the report
// must not call its output tokens counted from events.
TEST(Metrics, EmbeddingsHaveNoOutputTokensAndNoMissingUsage) {
  RequestRecord embed = Streamed(0, {}, 4 * kMs, -1);
  embed.embedding = true;
  embed.response_words = 0;
  EXPECT_EQ(embed.OutputTokens(), 0);
  MetricsSummary only = Summarize({embed, embed}, {});
  EXPECT_EQ(only.usage_missing, 0u);
  EXPECT_EQ(only.output_token_source, "none (embeddings)");
  EXPECT_EQ(only.input_token_source, "usage");
  RunReport report;
  report.label = "embeddings";
  report.total = only;
  EXPECT_EQ(FormatConsole(report, true).find("had no usage"), std::string::npos)
      << FormatConsole(report, true);
  // Beside a chat request with usage: nothing missing; beside one without, only that one.
  RequestRecord chat = Streamed(0, {1 * kMs, 2 * kMs}, 3 * kMs, 2);
  MetricsSummary mixed = Summarize({embed, chat}, {});
  EXPECT_EQ(mixed.usage_missing, 0u);
  EXPECT_EQ(mixed.output_token_source, "usage");
  RequestRecord bare = Streamed(0, {1 * kMs, 2 * kMs}, 3 * kMs, -1);
  MetricsSummary partly = Summarize({embed, bare}, {});
  EXPECT_EQ(partly.usage_missing, 1u);
  EXPECT_EQ(partly.output_token_source, "content events");
}

TEST(Metrics, SummaryExcludesWarmupAndCountsCancelledAsFailedAndErrorsByKind) {
  std::vector<RequestRecord> records;
  records.push_back(Streamed(0, {10 * kMs, 20 * kMs}, 20 * kMs, 2));
  records.push_back(Streamed(5 * kMs, {25 * kMs, 35 * kMs}, 45 * kMs, 3));
  RequestRecord warm = Streamed(-100 * kMs, {-50 * kMs}, -40 * kMs, 1);
  warm.warmup = true;
  records.push_back(warm);
  RequestRecord cancelled = Streamed(1 * kMs, {}, 900 * kMs, 0);
  cancelled.error = ErrorKind::kCancelled;
  records.push_back(cancelled);
  RequestRecord failed = Streamed(2 * kMs, {3 * kMs}, 30 * kMs, 1);
  failed.error = ErrorKind::kStreamError;
  records.push_back(failed);
  Slo slo;
  ASSERT_TRUE(ParseSlo("ttft_p50<=15ms", &slo).ok());
  MetricsSummary s = Summarize(records, {slo});
  EXPECT_EQ(s.ok, 2u);
  EXPECT_EQ(s.failed, 2u);
  EXPECT_EQ(s.warmup, 1u);
  EXPECT_EQ(s.cancelled, 1u);
  EXPECT_EQ(s.errors_by_kind.at("stream_error"), 1u);
  EXPECT_EQ(s.errors_by_kind.at("cancelled"), 1u);
  EXPECT_DOUBLE_EQ(s.error_rate, 2.0 / 4);
  // Window: first start 0 to last end 45 ms. The failed request is inside it; the cancelled one
  // "ended" only when the grace period ran out (900 ms) and does not stretch it.
  EXPECT_DOUBLE_EQ(s.window_s, 0.045);
  EXPECT_DOUBLE_EQ(s.request_throughput, 2 / 0.045);
  EXPECT_DOUBLE_EQ(s.output_token_throughput, 5 / 0.045);
  // Goodput: only the first request has TTFT <= 15 ms; the failed one never counts.
  EXPECT_EQ(s.good, 1u);
  EXPECT_DOUBLE_EQ(*s.goodput, 1 / 0.045);
  EXPECT_DOUBLE_EQ(s.ttft_ms.mean, 15);
  EXPECT_NEAR(s.itl_ms.Percentile(50), (10.0 + 10.0) / 2, 1e-9);  // 10/1 and (40-20)/2
}

TEST(Slo, ParsesAndChecks) {
  Slo slo;
  ASSERT_TRUE(ParseSlo("ttft_p95<=1s", &slo).ok());
  EXPECT_EQ(slo.metric, SloMetric::kTtft);
  EXPECT_EQ(slo.stat, "p95");
  EXPECT_DOUBLE_EQ(slo.threshold, 1000);
  EXPECT_TRUE(slo.at_most);
  ASSERT_TRUE(ParseSlo("request_throughput>=20", &slo).ok());
  EXPECT_FALSE(slo.at_most);
  EXPECT_FALSE(slo.per_request());
  ASSERT_TRUE(ParseSlo("itl_avg<50us", &slo).ok());
  EXPECT_EQ(slo.stat, "mean");
  EXPECT_TRUE(slo.strict);
  EXPECT_DOUBLE_EQ(slo.threshold, 0.05);
  MetricsSummary s;
  s.itl_ms = Describe({0.01, 0.04});
  EXPECT_TRUE(SloHolds(s, slo));
  s.itl_ms = Describe({0.05, 0.05});
  EXPECT_FALSE(SloHolds(s, slo));                 // strict
  EXPECT_FALSE(SloHolds(MetricsSummary{}, slo));  // no data never meets an objective
}

TEST(Slo, FailedRequestsCountAsTheWorstValue) {
  std::vector<double> one_to_97;
  for (int i = 1; i <= 97; ++i) one_to_97.push_back(i);
  MetricsSummary s;
  s.ttft_ms = Describe(one_to_97, /*keep_sorted=*/true);
  s.output_tokens_per_user = Describe(one_to_97, true);
  s.ok = 97;
  s.failed = 3;
  s.measured = 100;
  auto holds = [&](const char* text) {
    Slo slo;
    EXPECT_TRUE(ParseSlo(text, &slo).ok()) << text;
    return SloHolds(s, slo);
  };
  // p95 of all 100 with the 3 failures at the top is the successes' p97.9 (95.0 ms), not their
  // p95 (92.2 ms).
  EXPECT_FALSE(holds("ttft_p95<=94ms"));
  EXPECT_TRUE(holds("ttft_p95<=96ms"));
  EXPECT_FALSE(holds("ttft_p99<=1s"));  // the failures alone fill the 1% tail
  EXPECT_FALSE(holds("ttft_avg<=1s"));  // a failure's TTFT is unbounded
  EXPECT_FALSE(holds("ttft_max<=1s"));
  EXPECT_TRUE(holds("ttft_min<=1ms"));
  // At least: the failures sit at the bottom. p50 of all is the successes' p48.5 (47.5).
  EXPECT_TRUE(holds("output_tokens_per_user_p50>=47"));
  EXPECT_FALSE(holds("output_tokens_per_user_p50>=48"));
  EXPECT_FALSE(holds("output_tokens_per_user_p1>=0"));
  EXPECT_FALSE(holds("output_tokens_per_user_min>=0"));
  EXPECT_TRUE(holds("output_tokens_per_user_max>=97"));
  s.failed = 6;
  s.measured = 103;
  EXPECT_FALSE(holds("ttft_p95<=1s"));  // 5.8% failed: more than the 5% tail
  // A run that measured nothing is no evidence of a low error rate.
  Slo errors;
  ASSERT_TRUE(ParseSlo("error_rate<=0", &errors).ok());
  EXPECT_FALSE(SloHolds(MetricsSummary{}, errors));
}

TEST(Slo, RejectsBadInputWithAReason) {
  Slo slo;
  for (const char* bad : {"ttft", "ttft_p95", "ttft_p42<=1ms", "bogus_p95<=1ms", "ttft_p95<=x",
                          "ttft_p95<=3parsecs", "request_throughput>=5ms", "<=3"}) {
    Status s = ParseSlo(bad, &slo);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s.message();
  }
}

TEST(SlaSearch, FindsTheLargestPassingConcurrency) {
  for (int limit : {1, 2, 3, 7, 8, 37, 100, 1000}) {
    SlaSearchSpec spec;
    spec.max = 512;
    SlaSearchResult r = SearchLargestPassing(spec, [&](double c) { return c <= limit; });
    ASSERT_TRUE(r.found);
    EXPECT_EQ(r.best, std::min(limit, 512)) << limit;
    if (limit < 512) {
      EXPECT_EQ(r.first_failure, r.best + 1) << limit;
    }
    // Exponential then binary: about 2*log2(limit) probes, never a linear scan.
    EXPECT_LE(r.probes.size(), 2 * std::log2(std::max(limit, 2)) + 3) << limit;
  }
  SlaSearchResult none = SearchLargestPassing({}, [](double) { return false; });
  EXPECT_FALSE(none.found);
}

TEST(SlaSearch, RateSearchStopsAtThePrecision) {
  SlaSearchSpec spec{.start = 1, .max = 1000, .precision = 0.5, .integer = false};
  SlaSearchResult r = SearchLargestPassing(spec, [](double rate) { return rate <= 13.3; });
  EXPECT_LE(r.best, 13.3);
  EXPECT_GT(r.best, 13.3 - 0.5);
  EXPECT_GT(r.first_failure, 13.3);
}

TEST(SweepPoints, AxisSetsTheLoadShape) {
  Workload closed;
  closed.load.concurrency = 8;
  Workload at_rate = AtPoint({closed}, Axis::kRate, 12.5)[0];
  EXPECT_EQ(at_rate.load.mode, LoadMode::kOpenLoop);
  EXPECT_EQ(at_rate.load.rate, 12.5);
  EXPECT_EQ(at_rate.load.concurrency, 0);  // users are not a cap
  Workload capped = at_rate;
  capped.load.concurrency = 4;
  EXPECT_EQ(AtPoint({capped}, Axis::kRate, 20)[0].load.concurrency, 4);
  Workload at_users = AtPoint({at_rate}, Axis::kConcurrency, 16)[0];
  EXPECT_EQ(at_users.load.mode, LoadMode::kClosedLoop);
  EXPECT_EQ(at_users.load.concurrency, 16);
}

TEST(OpenAiProtocol, ClassifiesEventsAsGenAiPerfDoes) {
  EXPECT_TRUE(ClassifyStreamEvent("[DONE]").done);
  // Role-only and empty-content chunks are not tokens.
  EXPECT_FALSE(ClassifyStreamEvent(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})")
                   .has_content);
  EXPECT_TRUE(ClassifyStreamEvent(R"({"choices":[{"delta":{"content":"Hi"}}]})").has_content);
  EXPECT_TRUE(
      ClassifyStreamEvent(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})").has_content);
  EXPECT_TRUE(ClassifyStreamEvent(R"({"choices":[{"delta":{"reasoning":"hm"}}]})").has_content);
  EXPECT_TRUE(ClassifyStreamEvent(R"({"choices":[{"text":"x","index":0}]})").has_content);
  ChunkInfo usage =
      ClassifyStreamEvent(R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}})");
  EXPECT_FALSE(usage.has_content);
  EXPECT_EQ(usage.prompt_tokens, 3);
  EXPECT_EQ(usage.completion_tokens, 9);
  ChunkInfo error = ClassifyStreamEvent(R"({"error":{"message":"boom"}})");
  EXPECT_TRUE(error.is_error);
  EXPECT_EQ(error.error_message, "boom");
  EXPECT_TRUE(ClassifyStreamEvent("{not json").malformed);
}

TEST(OpenAiProtocol, BuildsBodiesWithUsageRequestAndExtraFields) {
  RequestOptions options;
  options.model = "m";
  options.extra_body = {{"ignore_eos", true}, {"min_tokens", 5}};
  Prompt prompt;
  prompt.text = "hello world";
  prompt.max_tokens = 5;
  auto body = nlohmann::json::parse(BuildRequestBody(options, prompt));
  EXPECT_EQ(body["messages"][0]["content"], "hello world");
  EXPECT_EQ(body["max_tokens"], 5);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["min_tokens"], 5);
  options.endpoint = Endpoint::kEmbeddings;
  body = nlohmann::json::parse(BuildRequestBody(options, prompt));
  EXPECT_EQ(body["input"], "hello world");
  EXPECT_FALSE(body.contains("stream"));
  EXPECT_FALSE(body.contains("max_tokens"));
}

}  // namespace
}  // namespace gpufrac::bench
