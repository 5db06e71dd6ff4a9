// Which model a request body names. The gateway needs only the top-level "model" string of an
// OpenAI request, but the whole body must still be valid JSON, and this runs on the event loop for
// every request: a long prompt must cost a fast scan, not a document tree. simdjson validates and
// finds the field; a body it refuses gets the final word from a streaming (SAX) pass of the JSON
// library the gateway has always judged bodies by, so no body's answer depends on which one ran.
#pragma once

#include <string>
#include <string_view>

namespace gpufrac::serve {

enum class RequestModel {
  kFound,      // *model holds the name
  kNotJson,    // the body does not parse
  kNotObject,  // valid JSON, but not an object
  kMissing,    // an object without a string "model" at its top level
};

// Duplicate keys follow the JSON library's DOM: the last "model" wins.
RequestModel FindRequestModel(std::string_view body, std::string* model);

}  // namespace gpufrac::serve
