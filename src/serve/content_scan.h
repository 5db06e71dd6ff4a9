// Telling content events from the others in an OpenAI stream, cheaply: the gateway times the first
// content event (TTFT) and the gaps between them (ITL) for every stream it passes through.
#pragma once

#include <string_view>

namespace gpufrac::serve {

// Whether an SSE event carries generated text: OpenAI chunks hold it in choices[].delta.content,
// .reasoning_content or .reasoning (chat) or choices[].text (completions); role-only ("content":
// "") and usage-only chunks do not count. A scan instead of a JSON parse, since the gateway sees
// every event of every stream; a key inside a string value is escaped (\") and never matches.
bool HasContent(std::string_view data);

// Whether an event shows that the stream is over: OpenAI's "[DONE]", or a chunk whose
// choices[].finish_reason is set (servers that skip "[DONE]" still send that). A stream that ends
// without either was cut short, even where only the closing connection frames it.
bool EndsStream(std::string_view data);

}  // namespace gpufrac::serve
