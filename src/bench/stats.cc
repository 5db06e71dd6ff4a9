#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gpufrac::bench {

double Distribution::Percentile(int p) const {
  for (size_t i = 0; i < kPercentiles.size(); ++i) {
    if (kPercentiles[i] == p) return percentiles[i];
  }
  return std::numeric_limits<double>::quiet_NaN();
}

double PercentileOfSorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lower = static_cast<size_t>(std::floor(rank));
  size_t upper = std::min(lower + 1, sorted.size() - 1);
  double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

Distribution Describe(std::vector<double> values, bool keep_sorted) {
  Distribution d;
  d.count = values.size();
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  d.mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (double v : values) squares += (v - d.mean) * (v - d.mean);
  d.std = std::sqrt(squares / static_cast<double>(values.size()));
  d.min = values.front();
  d.max = values.back();
  for (size_t i = 0; i < kPercentiles.size(); ++i) {
    d.percentiles[i] = PercentileOfSorted(values, kPercentiles[i]);
  }
  if (keep_sorted) d.sorted = std::move(values);
  return d;
}

}  // namespace gpufrac::bench
