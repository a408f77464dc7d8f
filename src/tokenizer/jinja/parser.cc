// Statement grammar of the parser ({% if %}, {% for %}, {% set %}, {% macro %}...) and
// parse_template, the entry point from template source to a Program.
#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "core/error.h"

namespace bitexact::tok::jinja {

std::vector<std::string> Parser::parse_targets(bool allow_attr, std::string* attr) {
  std::vector<std::string> names;
  bool paren = skip_op("(");
  names.push_back(expect_name());
  if (allow_attr && is_op(".")) {
    ++pos_;
    *attr = expect_name();
    return names;
  }
  while (skip_op(",")) {
    if (peek().type != Tok::kName || is_name("in")) break;
    names.push_back(expect_name());
  }
  if (paren) expect_op(")");
  return names;
}

Body Parser::parse_body(const std::vector<std::string>& end_names, std::string* found_end) {
  Body body;
  while (true) {
    const Token& t = peek();
    if (t.type == Tok::kEof) {
      if (end_names.empty()) return body;
      std::string expected;
      for (const auto& n : end_names) expected += (expected.empty() ? "'" : " or '") + n + "'";
      error(t, "unexpected end of template, expected " + expected);
    }
    if (t.type == Tok::kText) {
      auto s = std::make_unique<Stmt>();
      s->type = StmtType::kText;
      s->text = next().value;
      body.push_back(std::move(s));
    } else if (t.type == Tok::kVarBegin) {
      ++pos_;
      auto s = std::make_unique<Stmt>();
      s->type = StmtType::kOutput;
      s->offset = t.offset;
      s->expr = parse_tuple(true);
      if (peek().type != Tok::kVarEnd)
        error(peek(), "expected end of print statement, got " + describe(peek()));
      ++pos_;
      body.push_back(std::move(s));
    } else if (t.type == Tok::kBlockBegin) {
      const Token& name = peek(1);
      if (name.type == Tok::kName &&
          std::find(end_names.begin(), end_names.end(), name.value) != end_names.end()) {
        pos_ += 2;
        *found_end = name.value;
        return body;
      }
      ++pos_;
      body.push_back(parse_statement());
    } else {
      error(t, "unexpected " + describe(t));
    }
  }
}

std::unique_ptr<Stmt> Parser::parse_statement() {
  if (++nesting_ > kMaxParseDepth) error(peek(), "statements nested too deeply");
  const Token& t = peek();
  if (t.type != Tok::kName) error(t, "tag name expected");
  std::string tag = next().value;
  auto s = std::make_unique<Stmt>();
  s->offset = t.offset;
  std::string end;
  if (tag == "if") {
    s->type = StmtType::kIf;
    s->conditions.push_back(parse_tuple(false));
    expect_block_end();
    while (true) {
      s->bodies.push_back(parse_body({"elif", "else", "endif"}, &end));
      if (end == "elif") {
        s->conditions.push_back(parse_tuple(false));
        expect_block_end();
      } else {
        expect_block_end();
        if (end == "else") {
          s->else_body = parse_body({"endif"}, &end);
          expect_block_end();
        }
        break;
      }
    }
  } else if (tag == "for") {
    s->type = StmtType::kFor;
    s->targets = parse_targets(false, nullptr);
    if (!skip_name("in")) error(peek(), "expected 'in', got " + describe(peek()));
    s->expr = parse_tuple(false, {"recursive"});
    if (skip_name("if")) s->filter = parse_expression();
    if (is_name("recursive")) error(peek(), "recursive for loops are not supported");
    expect_block_end();
    ++loops_;
    s->body = parse_body({"endfor", "else"}, &end);
    --loops_;
    expect_block_end();
    if (end == "else") {
      s->else_body = parse_body({"endfor"}, &end);
      expect_block_end();
    }
  } else if (tag == "set") {
    s->targets = parse_targets(true, &s->attr);
    if (skip_op("=")) {
      s->type = StmtType::kSet;
      s->expr = parse_tuple(true);
      expect_block_end();
    } else {
      s->type = StmtType::kSetBlock;
      if (s->targets.size() != 1 || !s->attr.empty()) error(t, "block set needs a single name");
      if (is_op("|")) s->filter = parse_filter(nullptr);
      while (s->filter && is_op("|")) s->filter = parse_filter(std::move(s->filter));
      expect_block_end();
      s->body = parse_body({"endset"}, &end);
      expect_block_end();
    }
  } else if (tag == "macro") {
    s->type = StmtType::kMacro;
    s->targets.push_back(expect_name());
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      s->params.push_back(expect_name());
      s->defaults.push_back(skip_op("=") ? parse_expression() : nullptr);
    }
    expect_op(")");
    expect_block_end();
    int saved_loops = std::exchange(loops_, 0);
    s->body = parse_body({"endmacro"}, &end);
    loops_ = saved_loops;
    expect_block_end();
  } else if (tag == "filter") {
    s->type = StmtType::kFilterBlock;
    auto f = node(ExprType::kFilter, t);
    f->name = dotted_name();
    if (is_op("(")) parse_call_args(*f);
    s->filter = seal(std::move(f));
    while (is_op("|")) s->filter = parse_filter(std::move(s->filter));
    expect_block_end();
    s->body = parse_body({"endfilter"}, &end);
    expect_block_end();
  } else if (tag == "generation") {
    s->type = StmtType::kScope;
    expect_block_end();
    s->body = parse_body({"endgeneration"}, &end);
    expect_block_end();
  } else if (tag == "break" || tag == "continue") {
    s->type = tag == "break" ? StmtType::kBreak : StmtType::kContinue;
    if (loops_ == 0) error(t, "Tried to leave a loop outside of a loop ('" + tag + "')");
    expect_block_end();
  } else {
    error(t, "Encountered unknown tag '" + tag + "'");
  }
  --nesting_;
  return s;
}

std::unique_ptr<Program> parse_template(const std::string& raw_source) {
  auto program = std::make_unique<Program>(Program{Source(raw_source), {}});
  Parser parser(program->source, lex(program->source));
  program->body = parser.parse_root();
  return program;
}

}  // namespace bitexact::tok::jinja
