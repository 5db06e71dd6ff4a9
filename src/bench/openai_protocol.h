// The OpenAI wire format, kept in one place: request bodies for chat, completions and embeddings,
// and the classification of each streamed event (content? usage? error? done?).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace gpufrac::bench {

enum class Endpoint { kChat, kCompletions, kEmbeddings };
const char* EndpointName(Endpoint endpoint);
const char* EndpointPath(Endpoint endpoint);
Status ParseEndpoint(std::string_view text, Endpoint* endpoint);

struct Prompt {
  std::string text;         // used for completions and embeddings, and as the user message
  nlohmann::json messages;  // chat messages when given by a prompts file; null otherwise
  int words = 0;
  int max_tokens = -1;  // -1: do not send max_tokens
};

struct RequestOptions {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;
  bool stream = true;
  nlohmann::json extra_body = nlohmann::json::object();  // merged into the body last
};

std::string BuildRequestBody(const RequestOptions& options, const Prompt& prompt);

// What one SSE event (or a whole non-streamed body) says.
struct ChunkInfo {
  bool done = false;         // the "[DONE]" sentinel
  bool has_content = false;  // non-empty content, text or reasoning content
  bool finished = false;     // a choice carries a finish_reason: the generation ended
  bool has_usage = false;
  int prompt_tokens = -1;
  int completion_tokens = -1;
  bool is_error = false;
  std::string error_message;
  bool malformed = false;
};

ChunkInfo ClassifyStreamEvent(std::string_view data);
ChunkInfo ClassifyResponseBody(Endpoint endpoint, std::string_view body);
// Words (whitespace-separated) of a whole answer's text: choices' message content, reasoning
// content and completion text. -1 when the body is not such an answer.
int CountResponseWords(std::string_view body);

}  // namespace gpufrac::bench
