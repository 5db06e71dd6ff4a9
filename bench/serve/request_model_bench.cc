// CPU the gateway spends finding a request's model, per body size: the streaming lookup it uses
// against the whole-document parse it replaced. Both also validate the whole body.
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>
#include <string>

#include "serve/request_model.h"

namespace {

// A chat request whose prompt is about `words` words long, with "model" after the messages (the
// worst place for any lookup that stops early).
std::string ChatBody(int words) {
  std::string prompt;
  for (int i = 0; i < words; ++i) prompt += "word" + std::to_string(i % 97) + " ";
  return R"({"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":")" +
         prompt + R"("}],"stream":true,"max_tokens":256,"temperature":0.7,"model":"chat"})";
}

void BM_StreamingLookup(benchmark::State& state) {
  const std::string body = ChatBody(static_cast<int>(state.range(0)));
  std::string model;
  for (auto _ : state) {
    benchmark::DoNotOptimize(gpufrac::serve::FindRequestModel(body, &model));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}

void BM_WholeDocumentParse(benchmark::State& state) {
  const std::string body = ChatBody(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    benchmark::DoNotOptimize(doc.find("model")->get_ref<const std::string&>().size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}

BENCHMARK(BM_StreamingLookup)->Arg(32)->Arg(1000)->Arg(8000);
BENCHMARK(BM_WholeDocumentParse)->Arg(32)->Arg(1000)->Arg(8000);

}  // namespace

BENCHMARK_MAIN();
