#include "bench/prompts.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace gpufrac::bench {

int LengthShape::Sample(std::mt19937_64& rng) const {
  double value = mean;
  if (stddev > 0) value = std::normal_distribution<double>(mean, stddev)(rng);
  // Clamped before the conversion: a draw beyond int's range must not wrap around.
  return static_cast<int>(std::lround(std::clamp(value, 1.0, kMaxLength)));
}

std::vector<std::string> SplitWords(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

Status LoadTextFile(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot read " + path);
  std::ostringstream contents;
  contents << in.rdbuf();
  *text = contents.str();
  return Status::Ok();
}

namespace {

class SyntheticPrompts : public PromptSource {
 public:
  SyntheticPrompts(std::vector<std::string> words, LengthShape input, LengthShape output)
      : words_(std::move(words)), input_(input), output_(output) {}

  Prompt Next(std::mt19937_64& rng) override {
    Prompt prompt;
    int length = input_.Sample(rng);
    size_t start = std::uniform_int_distribution<size_t>(0, words_.size() - 1)(rng);
    for (int i = 0; i < length; ++i) {
      if (i > 0) prompt.text.push_back(' ');
      prompt.text += words_[(start + i) % words_.size()];
    }
    prompt.words = length;
    prompt.max_tokens = output_.mean > 0 ? output_.Sample(rng) : -1;
    return prompt;
  }

 private:
  std::vector<std::string> words_;
  LengthShape input_, output_;
};

class FilePrompts : public PromptSource {
 public:
  FilePrompts(std::vector<Prompt> prompts, LengthShape output)
      : prompts_(std::move(prompts)), output_(output) {}

  Prompt Next(std::mt19937_64& rng) override {
    Prompt prompt = prompts_[next_++ % prompts_.size()];
    if (prompt.max_tokens < 0 && output_.mean > 0) prompt.max_tokens = output_.Sample(rng);
    return prompt;
  }

 private:
  std::vector<Prompt> prompts_;
  LengthShape output_;
  size_t next_ = 0;
};

int CountWords(const std::string& text) { return static_cast<int>(SplitWords(text).size()); }

}  // namespace

std::unique_ptr<PromptSource> MakeSyntheticPrompts(std::vector<std::string> corpus_words,
                                                   LengthShape input, LengthShape output) {
  if (corpus_words.empty()) corpus_words.push_back("word");
  return std::make_unique<SyntheticPrompts>(std::move(corpus_words), input, output);
}

Status LoadPromptsFile(const std::string& path, LengthShape output,
                       std::unique_ptr<PromptSource>* source) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read prompts file " + path);
  std::vector<Prompt> prompts;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto where = [&] { return path + ":" + std::to_string(line_number) + ": "; };
    nlohmann::json doc = nlohmann::json::parse(line, nullptr, false);
    if (doc.is_discarded()) return Status::Error(where() + "invalid JSON");
    if (!doc.is_object()) return Status::Error(where() + "expected a JSON object");
    Prompt prompt;
    if (doc.contains("messages")) {
      const auto& messages = doc["messages"];
      if (!messages.is_array() || messages.empty()) {
        return Status::Error(where() + "\"messages\" must be a non-empty array");
      }
      for (const auto& message : messages) {
        if (!message.is_object() || !message.contains("role") || !message.contains("content") ||
            !message["content"].is_string()) {
          return Status::Error(where() + "each message needs \"role\" and string \"content\"");
        }
        prompt.text += message["content"].get<std::string>() + "\n";
      }
      prompt.messages = messages;
    } else {
      const char* key = doc.contains("text") ? "text" : "prompt";
      if (!doc.contains(key) || !doc[key].is_string()) {
        return Status::Error(where() + "needs a string \"text\" (or \"prompt\", or \"messages\")");
      }
      prompt.text = doc[key].get<std::string>();
    }
    prompt.words = CountWords(prompt.text);
    for (const char* key : {"output_tokens", "max_tokens"}) {
      if (!doc.contains(key)) continue;
      if (!doc[key].is_number_integer() || doc[key].get<int64_t>() < 0) {
        return Status::Error(where() + "\"" + key + "\" must be a non-negative integer");
      }
      prompt.max_tokens = doc[key].get<int>();
    }
    prompts.push_back(std::move(prompt));
  }
  if (prompts.empty()) return Status::Error("prompts file " + path + " has no prompts");
  *source = std::make_unique<FilePrompts>(std::move(prompts), output);
  return Status::Ok();
}

}  // namespace gpufrac::bench
