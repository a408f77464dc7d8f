// Splits Jinja template source into text and tag tokens, applying whitespace control ({%- -%})
// and trim_blocks/lstrip_blocks exactly as jinja2's lexer does in transformers' configuration.
#pragma once

#include <string>
#include <vector>

namespace bitexact::tok::jinja {

enum class Tok {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tok type;
  std::string value;  // text, identifier, decoded string literal, number spelling or operator
  size_t offset;      // byte offset in the normalised source, for line:column in errors
};

struct Source {
  std::string text;  // newlines normalised to \n, one trailing newline dropped
                     // (keep_trailing_newline=False)
  explicit Source(const std::string& raw);
  std::string where(size_t offset) const;  // "line L, column C"
};

// Throws Error(kFormat) "template syntax error at line L, column C: ..." on malformed tags.
std::vector<Token> lex(const Source& source);

}  // namespace bitexact::tok::jinja
