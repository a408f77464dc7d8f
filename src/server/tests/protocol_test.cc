// Request parsing details that the HTTP tests cannot see from outside: the penalties reach the
// engine's SamplingParams unchanged, out-of-range values are 400s naming the parameter, and
// parameters without an implementation are accepted only at their neutral value.
#include "server/protocol.h"

#include <gtest/gtest.h>

#include "server/api_error.h"

using namespace bitexact;
using namespace bitexact::server;
using nlohmann::json;

namespace {

ModelInfo ids_only_model() {
  ModelInfo m;
  m.served_name = "m";
  m.max_model_len = 64;
  m.vocab_size = 100;
  return m;
}

// The ApiError a body raises (status 0 when it parses).
ApiError error_of(const json& body) {
  const ModelInfo m = ids_only_model();
  try {
    parse_completion_request(body, m);
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "");
}

json base() { return {{"prompt", {1, 2, 3}}, {"max_tokens", 4}}; }

TEST(Protocol, PenaltiesPassThrough) {
  const ModelInfo m = ids_only_model();
  json body = base();
  GenerationJob plain = parse_completion_request(body, m);
  EXPECT_EQ(plain.params.presence_penalty, 0.0);
  EXPECT_EQ(plain.params.frequency_penalty, 0.0);
  EXPECT_EQ(plain.params.repetition_penalty, 1.0);
  body["presence_penalty"] = 0.5;
  body["frequency_penalty"] = -1.25;
  body["repetition_penalty"] = 1.3;
  GenerationJob job = parse_completion_request(body, m);
  EXPECT_EQ(job.params.presence_penalty, 0.5);
  EXPECT_EQ(job.params.frequency_penalty, -1.25);
  EXPECT_EQ(job.params.repetition_penalty, 1.3);
}

TEST(Protocol, BadPenaltiesNameTheirParameter) {
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, json>>{{"presence_penalty", 2.5},
                                                 {"presence_penalty", "high"},
                                                 {"frequency_penalty", -3},
                                                 {"repetition_penalty", 0},
                                                 {"repetition_penalty", -1.0},
                                                 {"length_penalty", 0.5}}) {
    json body = base();
    body[key] = value;
    const ApiError e = error_of(body);
    EXPECT_EQ(e.status(), 400) << key << " " << value;
    EXPECT_EQ(e.param(), key) << e.what();
  }
  json body = base();
  body["length_penalty"] = 1.0;  // neutral: accepted
  EXPECT_EQ(error_of(body).status(), 0);
}

// Integral fields may come as floats (2.0); huge ones must be a 400, not an out-of-range cast
// (undefined behaviour, found by fuzz_request).
TEST(Protocol, FloatIntegers) {
  const ModelInfo m = ids_only_model();
  json body = base();
  body["max_tokens"] = 5.0;
  EXPECT_EQ(parse_completion_request(body, m).params.max_tokens, 5);
  for (double bad : {7.7e35, -1e300, 9.3e18, 2.5}) {
    body["max_tokens"] = bad;
    const ApiError e = error_of(body);
    EXPECT_EQ(e.status(), 400) << bad;
    EXPECT_EQ(e.param(), "max_tokens") << bad;
  }
}

}  // namespace
