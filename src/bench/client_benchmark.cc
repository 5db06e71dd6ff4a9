// CPU cost of the client's per-event path (SSE framing + OpenAI event classification) and of the
// HTTP chunked decoding under it: what each streamed token costs the load generator.
#include <benchmark/benchmark.h>

#include <string>

#include "bench/http_parser.h"
#include "bench/openai_protocol.h"
#include "bench/sse_parser.h"

namespace gpufrac::bench {
namespace {

const std::string kChunk =
    R"({"id":"cmpl-123","object":"chat.completion.chunk","created":0,"model":"synthetic",)"
    R"("choices":[{"index":0,"delta":{"content":"w17 "},"finish_reason":null}]})";

void BM_ClassifyContentEvent(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ClassifyStreamEvent(kChunk));
}
BENCHMARK(BM_ClassifyContentEvent);

void BM_SseFrameAndClassify(benchmark::State& state) {
  std::string wire;
  for (int i = 0; i < 64; ++i) wire += "data: " + kChunk + "\n\n";
  size_t content = 0;
  SseParser parser([&](const SseEvent& e) { content += ClassifyStreamEvent(e.data).has_content; });
  for (auto _ : state) parser.Feed(wire);
  state.SetItemsProcessed(state.iterations() * 64);
  benchmark::DoNotOptimize(content);
}
BENCHMARK(BM_SseFrameAndClassify);

void BM_ChunkedHttpBody(benchmark::State& state) {
  std::string event = "data: " + kChunk + "\n\n";
  char size[16];
  std::snprintf(size, sizeof(size), "%zx\r\n", event.size());
  std::string wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 64; ++i) wire += size + event + "\r\n";
  wire += "0\r\n\r\n";
  for (auto _ : state) {
    size_t bytes = 0;
    HttpResponseParser parser([&](std::string_view d) { bytes += d.size(); });
    parser.Feed(wire);
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_ChunkedHttpBody);

}  // namespace
}  // namespace gpufrac::bench

BENCHMARK_MAIN();
