// Distribution statistics as GenAI-Perf/AIPerf (numpy) compute them: percentiles by linear
// interpolation between closest ranks (rank = p/100 * (n-1)), population standard deviation.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

namespace gpufrac::bench {

inline constexpr std::array<int, 9> kPercentiles = {1, 5, 10, 25, 50, 75, 90, 95, 99};

struct Distribution {
  size_t count = 0;
  double mean = 0, min = 0, max = 0, std = 0;
  std::array<double, kPercentiles.size()> percentiles{};  // in kPercentiles order
  // The samples, sorted, when Describe was asked to keep them (for SLOs that need a percentile
  // other than those above); empty otherwise.
  std::vector<double> sorted;

  // p must be one of kPercentiles; NaN otherwise.
  double Percentile(int p) const;
};

// Linear-interpolated percentile of sorted values, p in [0, 100].
double PercentileOfSorted(const std::vector<double>& sorted, double p);
Distribution Describe(std::vector<double> values, bool keep_sorted = false);

}  // namespace gpufrac::bench
