// The stories260K model and tokenizer (a real trained tiny Llama with a real vocabulary), loaded
// once per test binary and shared by the engine tests that drive it; and stepping an engine to
// the end, each request's tokens and logprobs gathered.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::engine::test {

inline const std::string kStories = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";

struct StoriesFixture {
  std::unique_ptr<model::Model> model = model::Model::load(kStories, {});
  std::unique_ptr<tok::Tokenizer> tok = tok::load_tokenizer(kStories);
};

inline StoriesFixture& fx() {
  static StoriesFixture f;
  return f;
}

// Steps `e` until every request finished; each request's deltas (all its samples) concatenated.
inline std::map<std::string, SampleDelta> run_to_end(Engine& e) {
  std::map<std::string, SampleDelta> acc;
  while (e.has_unfinished())
    for (auto& ro : e.step())
      for (auto& d : ro.samples) {
        SampleDelta& s = acc[ro.id];
        s.token_ids.insert(s.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
        s.logprobs.insert(s.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
      }
  return acc;
}

}  // namespace bitexact::engine::test
