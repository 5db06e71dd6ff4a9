#include "common/quantity.h"

#include <gtest/gtest.h>

namespace gpufrac {
namespace {

uint64_t Size(const char* text) {
  uint64_t bytes = 0;
  EXPECT_EQ(ParseSize(text, &bytes), ParseError::kNone) << text;
  return bytes;
}

TEST(ParseSize, AcceptsBinaryAndDecimalUnits) {
  EXPECT_EQ(Size("20GiB"), 20ull << 30);
  EXPECT_EQ(Size("512MiB"), 512ull << 20);
  EXPECT_EQ(Size("4KiB"), 4096u);
  EXPECT_EQ(Size("1TiB"), 1ull << 40);
  EXPECT_EQ(Size("3GB"), 3000000000ull);
  EXPECT_EQ(Size("2MB"), 2000000u);
  EXPECT_EQ(Size("5KB"), 5000u);
  EXPECT_EQ(Size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(Size("1073741824"), 1ull << 30);
  EXPECT_EQ(Size("100B"), 100u);
  EXPECT_EQ(Size(" 8 gib "), 8ull << 30);
  EXPECT_EQ(Size("512M"), 512ull << 20);
}

uint64_t Ms(const char* text) {
  uint64_t ms = 0;
  EXPECT_TRUE(ParseDurationMs(text, &ms)) << text;
  return ms;
}

// The one duration syntax of the node agent (config, API, gpufrac top) and gpufrac serve.
TEST(ParseDurationMs, TakesMillisecondsSecondsMinutesAndHours) {
  EXPECT_EQ(Ms("250ms"), 250u);
  EXPECT_EQ(Ms("10s"), 10000u);
  EXPECT_EQ(Ms("1.5s"), 1500u);
  EXPECT_EQ(Ms("2m"), 120000u);
  EXPECT_EQ(Ms("1h"), 3600000u);
  EXPECT_EQ(Ms("0.5h"), 1800000u);
  EXPECT_EQ(Ms("40"), 40u);
  EXPECT_EQ(Ms("0"), 0u);
  EXPECT_EQ(Ms("1.6ms"), 2u);  // to the nearest millisecond
  EXPECT_EQ(Ms("277777h"), 277777ull * 3600000);
}

TEST(ParseDurationMs, RefusesAnythingElse) {
  uint64_t ms = 7;
  for (const char* bad :
       {"",    "10 s", " 5s", "5s ", "-1s", "+5s", "fast", "1e3", "1e3ms", "0x10",
        "inf", "nan",  ".5s", "5.",  "5.s", "1d",  "5sec", "1H",  "10ms5", "300000000h"}) {
    EXPECT_FALSE(ParseDurationMs(bad, &ms)) << bad;
  }
  EXPECT_FALSE(ParseDurationMs(nullptr, &ms));
  EXPECT_EQ(ms, 7u);  // untouched
}

TEST(ParseSize, RefusesNonsense) {
  uint64_t bytes = 0;
  EXPECT_EQ(ParseSize("", &bytes), ParseError::kEmpty);
  EXPECT_EQ(ParseSize("abc", &bytes), ParseError::kNotANumber);
  EXPECT_EQ(ParseSize("20XB", &bytes), ParseError::kBadUnit);
  EXPECT_EQ(ParseSize("0GiB", &bytes), ParseError::kOutOfRange);
  EXPECT_EQ(ParseSize("-1GiB", &bytes), ParseError::kOutOfRange);
  EXPECT_EQ(ParseSize("0x10", &bytes), ParseError::kNotANumber);
  EXPECT_EQ(ParseSize("1.5", &bytes), ParseError::kNotANumber);
  EXPECT_EQ(ParseSize("99999999TiB", &bytes), ParseError::kOutOfRange);
  EXPECT_EQ(ParseSize("nan", &bytes), ParseError::kNotANumber);
  EXPECT_EQ(ParseSize(nullptr, &bytes), ParseError::kEmpty);
}

TEST(ParseFraction, AcceptsOnlyZeroToOne) {
  double fraction = 0;
  EXPECT_EQ(ParseFraction("0.5", &fraction), ParseError::kNone);
  EXPECT_DOUBLE_EQ(fraction, 0.5);
  EXPECT_EQ(ParseFraction("1", &fraction), ParseError::kNone);
  EXPECT_EQ(ParseFraction("0", &fraction), ParseError::kOutOfRange);
  EXPECT_EQ(ParseFraction("1.01", &fraction), ParseError::kOutOfRange);
  EXPECT_EQ(ParseFraction("-0.5", &fraction), ParseError::kOutOfRange);
  EXPECT_EQ(ParseFraction("half", &fraction), ParseError::kNotANumber);
  EXPECT_EQ(ParseFraction("0.5GiB", &fraction), ParseError::kNotANumber);
}

TEST(ParseMemoryAmount, TellsFractionsFromSizes) {
  MemoryAmount amount;
  ASSERT_EQ(ParseMemoryAmount("0.25", &amount), ParseError::kNone);
  EXPECT_TRUE(amount.is_fraction);
  EXPECT_EQ(amount.Resolve(80ull << 30), 20ull << 30);
  ASSERT_EQ(ParseMemoryAmount("20GiB", &amount), ParseError::kNone);
  EXPECT_FALSE(amount.is_fraction);
  EXPECT_EQ(amount.Resolve(80ull << 30), 20ull << 30);
  ASSERT_EQ(ParseMemoryAmount("4096", &amount), ParseError::kNone);
  EXPECT_EQ(amount.bytes, 4096u);
  EXPECT_EQ(ParseMemoryAmount("0", &amount), ParseError::kOutOfRange);
  // Unit-less and above 1 with a decimal point: a fraction out of range, not 2 bytes.
  EXPECT_EQ(ParseMemoryAmount("2.0", &amount), ParseError::kOutOfRange);
  EXPECT_EQ(ParseMemoryAmount("1.5", &amount), ParseError::kOutOfRange);
  EXPECT_EQ(ParseMemoryAmount("1e9", &amount), ParseError::kOutOfRange);
  ASSERT_EQ(ParseMemoryAmount("1.0", &amount), ParseError::kNone);  // the whole card
  EXPECT_TRUE(amount.is_fraction);
  ASSERT_EQ(ParseMemoryAmount("1.5GiB", &amount), ParseError::kNone);
  EXPECT_EQ(amount.bytes, 3ull << 29);
}

TEST(FormatBytes, IsHumanReadable) {
  char buf[32];
  FormatBytes(20ull << 30, buf, sizeof buf);
  EXPECT_STREQ(buf, "20.0GiB");
  FormatBytes(512, buf, sizeof buf);
  EXPECT_STREQ(buf, "512B");
}

}  // namespace
}  // namespace gpufrac
