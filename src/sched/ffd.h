// First-fit-decreasing bin packing, the reference the simulator and benchmarks hold the
// scheduler's packing against. A max segment tree over bins finds the first bin with room in
// O(log bins), so references for 10,000-GPU clusters stay cheap.
#pragma once

#include <cstdint>
#include <vector>

namespace gpufrac::sched {

// Number of bins of `capacity` that first-fit-decreasing uses for `items` (each <= capacity).
int FirstFitDecreasingBins(std::vector<int64_t> items, int64_t capacity);

}  // namespace gpufrac::sched
