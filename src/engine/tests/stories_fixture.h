// The stories260K model and tokenizer (a real trained tiny Llama with a real vocabulary), loaded
// once per test binary and shared by the engine tests that drive it.
#pragma once

#include <memory>
#include <string>

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

}  // namespace bitexact::engine::test
