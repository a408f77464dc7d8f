// A tokenizer loaded from Hugging Face tokenizer.json (+ tokenizer_config.json for the chat
// template and BOS/EOS strings): added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace bitexact::tok {

// `json_path`: tokenizer.json; `config_path`: tokenizer_config.json or "" when there is none.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_path,
                                             const std::string& config_path);

}  // namespace bitexact::tok
