// Mixed workloads from one YAML file: several models or endpoints at once, each with its own load
// and input shape, reported per workload and in total. See docs/bench.md for the format.
#pragma once

#include <string>
#include <vector>

#include "bench/loadgen.h"
#include "common/status.h"

namespace gpufrac::bench {

// Durations like "500ms", "30s", "2m", "1h", or a bare number of seconds.
Status ParseDuration(const std::string& text, double* seconds);

Status LoadWorkloadFile(const std::string& path, const std::vector<std::string>& corpus_words,
                        std::vector<Workload>* workloads);

}  // namespace gpufrac::bench
