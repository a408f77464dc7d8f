// What a command needs to run a model: the model, its tokenizer when it has one, and the stop
// ids, loaded from a Hugging Face folder or a GGUF file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::apps {

struct ModelSession {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;  // null when the checkpoint ships none
  std::vector<int32_t> eos_ids;               // generation_config.json, else config, else tokenizer
};

ModelSession open_model(const std::string& path, const model::ModelOptions& options);
Device parse_device(const std::string& name);

}  // namespace bitexact::apps
