// The tokenizer.json pipeline stages as small interfaces built from their JSON: normalizers,
// pre-tokenizers and the decoder chain. Each factory throws Error(kUnsupported) naming a component
// type it does not implement, and Error(kFormat) for a malformed one.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/tokenizer.h"

namespace bitexact::tok {

using Json = nlohmann::json;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};
// `j` null -> nullptr (no normalizer).
std::unique_ptr<Normalizer> make_normalizer(const Json& j);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every piece further (and may rewrite it). `at_input_start`: the first piece begins at
  // offset 0 of the caller's text (Metaspace's prepend_scheme "first" depends on it).
  virtual void pre_tokenize(std::vector<std::string>& pieces, bool at_input_start) const = 0;
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j);

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode(std::vector<std::string>& tokens, const DecodeContext& ctx) const = 0;
};

// The decoder of a tokenizer ("decoder" in tokenizer.json, possibly a Sequence), flattened.
class DecoderChain {
 public:
  DecoderChain() = default;
  explicit DecoderChain(const Json& j);  // null -> no decoder: tokens joined with " " as HF does
  ~DecoderChain();
  DecoderChain(DecoderChain&&) noexcept;
  DecoderChain& operator=(DecoderChain&&) noexcept;

  std::string decode(std::vector<std::string> tokens, const DecodeContext& ctx) const;
  // Incremental decoding may cut the token sequence before a token whose piece is
  // self-contained; false when the chain is not known to allow cutting anywhere.
  bool streamable() const { return streamable_; }
  bool self_contained(const std::string& token) const;
  // A token a partial decode holds back entirely (a ByteFallback byte when nothing fuses the
  // bytes before that step).
  bool holds_back(const std::string& token) const;

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
  bool none_ = true;
  bool streamable_ = true;
  bool byte_level_ = false;
  bool byte_fallback_ = false;
};

// Small JSON accessors with messages naming the component.
const Json& json_at(const Json& j, const char* key, const std::string& where);
std::string json_string(const Json& j, const char* key, const std::string& where);

}  // namespace bitexact::tok
