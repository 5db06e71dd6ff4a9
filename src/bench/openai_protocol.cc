#include "bench/openai_protocol.h"

namespace gpufrac::bench {
namespace {

using nlohmann::json;

bool NonEmptyString(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

void ReadUsage(const json& doc, ChunkInfo* info) {
  auto usage = doc.find("usage");
  if (usage == doc.end() || !usage->is_object()) return;
  info->has_usage = true;
  auto prompt = usage->find("prompt_tokens");
  if (prompt != usage->end() && prompt->is_number_integer()) info->prompt_tokens = *prompt;
  auto completion = usage->find("completion_tokens");
  if (completion != usage->end() && completion->is_number_integer()) {
    info->completion_tokens = *completion;
  }
}

void ReadError(const json& doc, ChunkInfo* info) {
  auto error = doc.find("error");
  if (error == doc.end() || error->is_null()) return;
  info->is_error = true;
  if (error->is_object() && error->contains("message") && (*error)["message"].is_string()) {
    info->error_message = (*error)["message"].get<std::string>();
  } else {
    info->error_message = error->dump();
  }
}

// Chat deltas carry "content" and, on reasoning models, "reasoning_content" (vLLM, SGLang) or
// "reasoning" (newer vLLM); completions carry "text". Any non-empty one counts as a token event.
bool ChoiceHasContent(const json& choice) {
  if (NonEmptyString(choice, "text")) return true;
  for (const char* key : {"delta", "message"}) {
    auto part = choice.find(key);
    if (part == choice.end() || !part->is_object()) continue;
    if (NonEmptyString(*part, "content") || NonEmptyString(*part, "reasoning_content") ||
        NonEmptyString(*part, "reasoning")) {
      return true;
    }
  }
  return false;
}

}  // namespace

const char* EndpointName(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kChat:
      return "chat";
    case Endpoint::kCompletions:
      return "completions";
    case Endpoint::kEmbeddings:
      return "embeddings";
  }
  return "?";
}

const char* EndpointPath(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kChat:
      return "/v1/chat/completions";
    case Endpoint::kCompletions:
      return "/v1/completions";
    case Endpoint::kEmbeddings:
      return "/v1/embeddings";
  }
  return "/";
}

Status ParseEndpoint(std::string_view text, Endpoint* endpoint) {
  if (text == "chat") {
    *endpoint = Endpoint::kChat;
  } else if (text == "completions") {
    *endpoint = Endpoint::kCompletions;
  } else if (text == "embeddings") {
    *endpoint = Endpoint::kEmbeddings;
  } else {
    return Status::Error("unknown endpoint '" + std::string(text) +
                         "' (expected chat, completions or embeddings)");
  }
  return Status::Ok();
}

std::string BuildRequestBody(const RequestOptions& options, const Prompt& prompt) {
  json body;
  body["model"] = options.model;
  switch (options.endpoint) {
    case Endpoint::kChat:
      if (prompt.messages.is_array()) {
        body["messages"] = prompt.messages;
      } else {
        body["messages"] = json::array({{{"role", "user"}, {"content", prompt.text}}});
      }
      break;
    case Endpoint::kCompletions:
      body["prompt"] = prompt.text;
      break;
    case Endpoint::kEmbeddings:
      body["input"] = prompt.text;
      break;
  }
  if (options.endpoint != Endpoint::kEmbeddings) {
    if (prompt.max_tokens >= 0) body["max_tokens"] = prompt.max_tokens;
    body["stream"] = options.stream;
    // Ask for the token counts in a final usage chunk: the metrics count tokens by the server.
    if (options.stream) body["stream_options"] = {{"include_usage", true}};
  }
  if (options.extra_body.is_object()) {
    for (const auto& [key, value] : options.extra_body.items()) body[key] = value;
  }
  // Prompts from files are checked to be UTF-8; replace, not throw, if one slips through.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

ChunkInfo ClassifyStreamEvent(std::string_view data) {
  ChunkInfo info;
  if (data == "[DONE]") {
    info.done = true;
    return info;
  }
  json doc = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    info.malformed = true;
    return info;
  }
  ReadError(doc, &info);
  ReadUsage(doc, &info);
  auto choices = doc.find("choices");
  if (choices != doc.end() && choices->is_array()) {
    for (const json& choice : *choices) {
      if (!choice.is_object()) continue;
      if (ChoiceHasContent(choice)) info.has_content = true;
      auto reason = choice.find("finish_reason");
      if (reason != choice.end() && !reason->is_null()) info.finished = true;
    }
  }
  return info;
}

int CountResponseWords(std::string_view body) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return -1;
  auto choices = doc.find("choices");
  if (choices == doc.end() || !choices->is_array()) return -1;
  int words = 0;
  auto count = [&](const json& object, const char* key) {
    auto it = object.find(key);
    if (it == object.end() || !it->is_string()) return;
    bool in_word = false;
    for (char c : it->get_ref<const std::string&>()) {
      const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
      if (!space && !in_word) ++words;
      in_word = !space;
    }
  };
  for (const json& choice : *choices) {
    if (!choice.is_object()) continue;
    count(choice, "text");
    auto message = choice.find("message");
    if (message == choice.end() || !message->is_object()) continue;
    for (const char* key : {"content", "reasoning_content", "reasoning"}) count(*message, key);
  }
  return words;
}

ChunkInfo ClassifyResponseBody(Endpoint endpoint, std::string_view body) {
  ChunkInfo info = ClassifyStreamEvent(body);
  if (info.malformed || info.is_error) return info;
  if (endpoint == Endpoint::kEmbeddings) {
    json doc = json::parse(body, nullptr, false);
    auto data = doc.find("data");
    info.has_content = data != doc.end() && data->is_array() && !data->empty();
  }
  return info;
}

}  // namespace gpufrac::bench
