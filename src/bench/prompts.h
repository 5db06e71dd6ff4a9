// Where prompts come from: synthetic prompts cut from a text corpus with a chosen input and output
// length (mean and standard deviation, in words, which the synthetic server counts as tokens), or
// a JSONL file of prompts. The output length is requested through max_tokens.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/openai_protocol.h"
#include "common/status.h"

namespace gpufrac::bench {

// The longest prompt or answer length accepted, in words or tokens.
inline constexpr double kMaxLength = 1'000'000;

struct LengthShape {
  double mean = 0;  // 0 for outputs: send no max_tokens
  double stddev = 0;
  // A sample from N(mean, stddev) rounded, at least 1.
  int Sample(std::mt19937_64& rng) const;
};

class PromptSource {
 public:
  virtual ~PromptSource() = default;
  virtual Prompt Next(std::mt19937_64& rng) = 0;
};

// The corpus shipped with gpufrac (data/corpus/corpus.txt, built into the binary).
const std::string& BuiltinCorpus();
Status LoadTextFile(const std::string& path, std::string* text);
std::vector<std::string> SplitWords(const std::string& text);

std::unique_ptr<PromptSource> MakeSyntheticPrompts(std::vector<std::string> corpus_words,
                                                   LengthShape input, LengthShape output);
// Each line: {"text": "..."} or {"prompt": "..."} or {"messages": [...]}, optionally with
// "output_tokens" (or "max_tokens"); lines without one get a max_tokens drawn from `output`.
Status LoadPromptsFile(const std::string& path, LengthShape output,
                       std::unique_ptr<PromptSource>* source);

}  // namespace gpufrac::bench
