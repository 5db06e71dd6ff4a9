// The autoscaler's sliding-window percentile against a sorted reference.
#include "serve/serve_metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace gpufrac::serve {
namespace {

constexpr int64_t kSec = 1'000'000'000;

double SortedPercentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

TEST(SlidingWindow, PercentileMatchesASortedReferenceWithDuplicates) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> value(0, 50);  // few distinct values: many ties
  for (size_t n : {1, 2, 3, 10, 101, 5000}) {
    SlidingWindow window;
    std::vector<double> all;
    for (size_t i = 0; i < n; ++i) {
      all.push_back(value(rng) * 0.5);
      window.Add(kSec, all.back());
    }
    for (double p : {0.0, 1.0, 50.0, 95.0, 99.0, 100.0}) {
      EXPECT_DOUBLE_EQ(window.Percentile(kSec, kSec, p), SortedPercentile(all, p))
          << "n=" << n << " p=" << p;
    }
  }
}

TEST(SlidingWindow, OldSamplesLeaveTheWindowAndEmptyIsMinusOne) {
  SlidingWindow window;
  EXPECT_EQ(window.Percentile(kSec, kSec, 95), -1);
  window.Add(1 * kSec, 1000);  // leaves the window before the others
  for (int i = 1; i <= 100; ++i) window.Add(3 * kSec, i);
  EXPECT_EQ(window.Count(3 * kSec, 10 * kSec), 101u);
  EXPECT_DOUBLE_EQ(window.Percentile(3 * kSec, 10 * kSec, 100), 1000);
  EXPECT_DOUBLE_EQ(window.Percentile(3 * kSec, 1 * kSec, 100), 100);
  EXPECT_EQ(window.Count(3 * kSec, 1 * kSec), 100u);
  EXPECT_DOUBLE_EQ(window.Percentile(3 * kSec, 1 * kSec, 50), 50.5);
  EXPECT_EQ(window.Percentile(20 * kSec, 1 * kSec, 50), -1);
}

}  // namespace
}  // namespace gpufrac::serve
