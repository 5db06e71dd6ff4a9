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

// What a workload that does not say gets, from the command line (--url, --model, --api-key,
// --tls-ca, --insecure, --timeout and their environment variables): a workload's own key wins,
// then the file's top-level one, then these. api_key, tls_ca and insecure go only to the
// workloads that take `url` from here: the key (often $OPENAI_API_KEY, exported for some other
// service) must not reach the other servers a file names.
struct WorkloadDefaults {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  std::string api_key;
  std::string tls_ca;
  bool insecure = false;
  double timeout_s = 600;
};

Status LoadWorkloadFile(const std::string& path, const std::vector<std::string>& corpus_words,
                        const WorkloadDefaults& defaults, std::vector<Workload>* workloads);

}  // namespace gpufrac::bench
