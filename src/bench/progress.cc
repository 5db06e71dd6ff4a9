#include "bench/progress.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "bench/loadgen.h"
#include "bench/stats.h"

namespace gpufrac::bench {

ProgressLine::ProgressLine(const std::vector<Workload>& workloads,
                           const std::vector<RequestRecord>* records)
    : records_(records) {
  for (const Workload& w : workloads) {
    if (w.load.requests > 0) {
      planned_requests_ += w.load.requests + w.load.warmup_requests;
    } else {
      planned_s_ = std::max(planned_s_, w.load.warmup_s + w.load.duration_s);
    }
  }
}

void ProgressLine::Update(int64_t elapsed_ns, size_t in_flight) {
  std::vector<double> ttft;
  size_t done = records_->size();
  for (size_t i = seen_; i < done; ++i) {
    const RequestRecord& r = (*records_)[i];
    if (!r.ok()) ++errors_;
    if (r.ok() && !r.content_ns.empty()) ttft.push_back((r.content_ns[0] - r.start_ns) / 1e6);
  }
  double interval_s = (elapsed_ns - last_elapsed_ns_) / 1e9;
  double rate = interval_s > 0 ? (done - seen_) / interval_s : 0;
  seen_ = done;
  last_elapsed_ns_ = elapsed_ns;
  double fraction = -1;
  if (planned_requests_ > 0 && planned_s_ == 0) {
    fraction = static_cast<double>(done) / planned_requests_;
  } else if (planned_s_ > 0 && planned_requests_ == 0) {
    fraction = elapsed_ns / 1e9 / planned_s_;
  }
  std::string bar;
  if (fraction >= 0) {
    constexpr int kWidth = 24;
    int filled = std::clamp(static_cast<int>(fraction * kWidth), 0, kWidth);
    bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
  }
  std::sort(ttft.begin(), ttft.end());
  std::string ttft_text =
      ttft.empty() ? "-"
                   : std::to_string(static_cast<int>(PercentileOfSorted(ttft, 50) * 100) / 100.0)
                         .substr(0, 7);
  std::fprintf(stderr,
               "\r%s%6.1fs  done %zu  in flight %zu  %.1f req/s  TTFT p50 %s ms  errors %zu ",
               bar.c_str(), elapsed_ns / 1e9, done, in_flight, rate, ttft_text.c_str(), errors_);
  std::fflush(stderr);
}

void ProgressLine::Finish(int64_t elapsed_ns) {
  Update(elapsed_ns, 0);
  std::fputc('\n', stderr);
}

}  // namespace gpufrac::bench
