// Shared pieces of the end-to-end tests: an in-process synthetic server that records ground truth
// and a workload aimed at it.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "bench/loadgen.h"
#include "bench/synth/synth_server.h"

namespace gpufrac::bench::testing {

inline constexpr int64_t kMs = 1'000'000;

// Client timestamps must match the server's to within this (the "1 ms per request").
// Sanitized builds are Debug and several times slower: with the server's threads and the client
// sharing two cores, their medians reached 6-15 ms on a busy host (2026-12-04). They check memory
// and causality; the 1 ms bound is the normal build's to check.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr int64_t kToleranceNs = 30 * kMs;
#else
inline constexpr int64_t kToleranceNs = 1 * kMs;
#endif

class SynthFixture {
 public:
  explicit SynthFixture(SynthConfig config) : server_(WithTruth(std::move(config))) {
    Status s = server_.Start();
    EXPECT_TRUE(s.ok()) << s.message();
  }
  uint16_t port() const { return server_.port(); }
  SynthServer& server() { return server_; }

  Workload MakeWorkload(int concurrency, int64_t requests, int output_tokens) const {
    Workload w;
    EXPECT_TRUE(ParseTargetUrl("http://127.0.0.1:" + std::to_string(port()), &w.target).ok());
    w.request.model = "synthetic";
    w.prompts = MakeSyntheticPrompts(SplitWords(BuiltinCorpus()), {32, 4},
                                     {static_cast<double>(output_tokens), 0});
    w.load.concurrency = concurrency;
    w.load.requests = requests;
    w.timeout_s = 30;
    return w;
  }

  // Ground truth keyed by the X-Gpufrac-Request-Id the client sent. Stops the server first: it
  // records a request just after its last write, which can be after the client has seen that write.
  std::map<uint64_t, GroundTruth> TruthById() {
    server_.Stop();
    std::map<uint64_t, GroundTruth> out;
    for (GroundTruth& t : server_.TakeGroundTruth()) {
      out[std::stoull(t.request_id)] = std::move(t);
    }
    return out;
  }

 private:
  static SynthConfig WithTruth(SynthConfig c) {
    c.record_ground_truth = true;
    return c;
  }
  SynthServer server_;
};

}  // namespace gpufrac::bench::testing
