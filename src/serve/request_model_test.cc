// The streaming model lookup agrees with a full parse of the body on every kind of input.
#include "serve/request_model.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace gpufrac::serve {
namespace {

// What the gateway decided with a whole-document parse, before the streaming lookup.
RequestModel ByDom(std::string_view body, std::string* model) {
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return RequestModel::kNotJson;
  if (!doc.is_object()) return RequestModel::kNotObject;
  const auto it = doc.find("model");
  if (it == doc.end() || !it->is_string()) return RequestModel::kMissing;
  *model = it->get<std::string>();
  return RequestModel::kFound;
}

TEST(RequestModelTest, AgreesWithAWholeDocumentParse) {
  const char* bodies[] = {
      R"({"model":"chat","messages":[{"role":"user","content":"hi"}]})",
      R"({"messages":[{"role":"user","content":"hi","model":"inner"}],"model":"chat"})",
      R"({"stream":true,"model":"a b","max_tokens":3})",
      R"(  {"model" : "spaced" }  )",
      R"({"model":"first","model":"last"})",
      R"({"model":"first","model":7})",
      R"({"model":7,"model":"last"})",
      R"({"model":null})",
      R"({"model":{"name":"nested"}})",
      R"({"model":["chat"]})",
      R"({"other":{"model":"deep"}})",
      R"({"model":"esc\"aped\u00e9"})",
      R"({})",
      R"([{"model":"chat"}])",
      R"("model")",
      R"(42)",
      R"({"model":"chat")",
      R"({"model":"chat"} trailing)",
      R"({"model":"chat",})",
      "",
      "{\"model\":\"bad\xff\"}",
      "{\"model\":\"ctl\x01\"}",
      R"({"model":"chat","seed":123456789012345678901234567890})",
      R"({"model":"chat","t":1e400})",
      R"({"model":"chat","t":-0.0e-7})",
      R"({"model":"chat","t":01})",
      R"({"model":"chat","t":.5})",
      R"({"model":"chat","t":"\ud800"})",
      R"({"model":"chat","t":tru})",
      R"({"model":"ch\/at"})",
  };
  for (const char* body : bodies) {
    std::string streamed, whole;
    const RequestModel got = FindRequestModel(body, &streamed);
    EXPECT_EQ(got, ByDom(body, &whole)) << body;
    if (got == RequestModel::kFound) {
      EXPECT_EQ(streamed, whole) << body;
    }
  }
}

TEST(RequestModelTest, DeeplyNestedBodiesGetTheSameAnswer) {
  // Past simdjson's default depth (1024) the SAX scan decides.
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  const std::string body = R"({"model":"chat","x":)" + deep + "}";
  std::string streamed, whole;
  EXPECT_EQ(FindRequestModel(body, &streamed), ByDom(body, &whole));
  EXPECT_EQ(streamed, "chat");
}

TEST(RequestModelTest, MutatedBodiesGetTheSameAnswerAsAWholeDocumentParse) {
  // Random edits of valid requests: most break the JSON somewhere, some keep it valid with another
  // shape. Either way the decision must match the whole-document parse.
  const std::string seeds[] = {
      R"({"model":"chat","messages":[{"role":"user","content":"hi \u00e9 \n"}],"stream":true})",
      R"({"input":["a","b"],"model":"embed","dimensions":64,"x":[1.5e3,-2,null,true,{}]})",
  };
  const std::string alphabet = "{}[]\":,\\ 0123456789.-+eEtrufalsn\x01\xc3\xa9\xff";
  std::mt19937 rng(7);
  int found = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string body = seeds[i % 2];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          body[at] = c;
          break;
        case 1:
          body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          body.erase(at, 1);
      }
    }
    std::string streamed, whole;
    const RequestModel got = FindRequestModel(body, &streamed);
    ASSERT_EQ(got, ByDom(body, &whole)) << body;
    if (got == RequestModel::kFound) {
      ASSERT_EQ(streamed, whole) << body;
      ++found;
    }
  }
  EXPECT_GT(found, 100);  // the valid survivors were checked too
}

TEST(RequestModelTest, ALongPromptIsScannedWhole) {
  std::string body = R"({"messages":[{"role":"user","content":")";
  body += std::string(1 << 20, 'x');
  body += R"("}],"model":"after-the-prompt"})";
  std::string model;
  ASSERT_EQ(FindRequestModel(body, &model), RequestModel::kFound);
  EXPECT_EQ(model, "after-the-prompt");
  body.pop_back();  // the object never closes
  EXPECT_EQ(FindRequestModel(body, &model), RequestModel::kNotJson);
}

}  // namespace
}  // namespace gpufrac::serve
