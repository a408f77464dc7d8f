// A SentencePiece (BPE, byte fallback) tokenizer from a GGUF file's `tokenizer.ggml.*` metadata
// (`tokenizer.ggml.model` == "llama"), encoding as llama.cpp's SPM tokenizer and sentencepiece do.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace bitexact::tok {

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& gguf_path);

}  // namespace bitexact::tok
