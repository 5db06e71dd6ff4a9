// The gateway's content scan agrees with gpufrac bench's JSON classification on the events real
// servers send.
#include "serve/content_scan.h"

#include <gtest/gtest.h>

#include "bench/openai_protocol.h"

namespace gpufrac::serve {
namespace {

TEST(ServeContentScanTest, AgreesWithTheJsonClassification) {
  const char* events[] = {
      R"({"choices":[{"delta":{"content":"","role":"assistant"},"index":0}]})",
      R"({"choices":[{"delta":{"role":"assistant"},"index":0}]})",
      R"({"choices":[{"delta":{"content":"w0 "},"index":0}]})",
      R"({"choices":[{"delta":{"content": "spaced"},"index":0}]})",
      R"({"choices":[{"delta":{"content":null},"index":0}]})",
      R"({"choices":[{"delta":{"reasoning_content":"think"},"index":0}]})",
      R"({"choices":[{"delta":{"reasoning":"think"},"index":0}]})",
      R"({"choices":[{"text":"hello","index":0}]})",
      R"({"choices":[{"text":"","index":0,"finish_reason":"stop"}]})",
      R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}})",
      R"({"error":{"message":"boom","code":502}})",
      R"({"choices":[{"delta":{"content":"say \"content\":\"x\""},"index":0}]})",
      R"({"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"text\":\"\"}"}}]}}]})",
      "[DONE]",
  };
  for (const char* e : events) {
    EXPECT_EQ(HasContent(e), bench::ClassifyStreamEvent(e).has_content) << e;
  }
}

TEST(ServeContentScanTest, KnowsTheEventsThatEndAStream) {
  EXPECT_TRUE(EndsStream("[DONE]"));
  EXPECT_TRUE(EndsStream(R"({"choices":[{"text":"","index":0,"finish_reason":"stop"}]})"));
  EXPECT_TRUE(EndsStream(R"({"choices":[{"delta":{},"finish_reason" : "length"}]})"));
  EXPECT_FALSE(EndsStream(R"({"choices":[{"delta":{"content":"a"},"finish_reason":null}]})"));
  EXPECT_FALSE(EndsStream(R"({"choices":[{"delta":{"content":"w0 "},"index":0}]})"));
  // The key inside generated text is escaped and does not count.
  EXPECT_FALSE(EndsStream(R"({"choices":[{"delta":{"content":"\"finish_reason\":\"stop\""}}]})"));
  EXPECT_FALSE(EndsStream(" [DONE]x"));
}

}  // namespace
}  // namespace gpufrac::serve
