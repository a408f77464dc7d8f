// The recursive-descent parser's state and grammar (jinja2/parser.py's): parser.cc parses
// statements and whole templates, parse_expr.cc expressions. Internal to the interpreter.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/jinja/ast.h"

namespace bitexact::tok::jinja {

inline constexpr int kMaxParseDepth =
    200;  // expression height and statement nesting: bounds evaluator recursion

class Parser {
 public:
  Parser(const Source& src, std::vector<Token> toks) : src_(src), toks_(std::move(toks)) {}

  Body parse_root() {
    std::string end;
    return parse_body({}, &end);
  }

 private:
  const Source& src_;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loops_ = 0;  // enclosing for loops, for break/continue (a macro body starts at 0)

  [[noreturn]] void error(const Token& t, const std::string& msg) const {
    fail(ErrorKind::kFormat, "template syntax error at " + src_.where(t.offset) + ": " + msg);
  }
  const Token& peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  const Token& next() { return toks_[std::min(pos_++, toks_.size() - 1)]; }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).type == Tok::kOp && peek(k).value == op;
  }
  bool is_name(const char* n, size_t k = 0) const {
    return peek(k).type == Tok::kName && peek(k).value == n;
  }
  bool skip_op(const char* op) { return is_op(op) ? (++pos_, true) : false; }
  bool skip_name(const char* n) { return is_name(n) ? (++pos_, true) : false; }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::kEof:
        return "end of template";
      case Tok::kBlockEnd:
        return "end of statement block";
      case Tok::kVarEnd:
        return "end of print statement";
      case Tok::kString:
        return "string";
      case Tok::kText:
        return "template data";
      default:
        return "'" + t.value + "'";
    }
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(peek(), std::string("expected '") + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().type != Tok::kName) error(peek(), "expected a name, got " + describe(peek()));
    return next().value;
  }
  void expect_block_end() {
    if (peek().type != Tok::kBlockEnd)
      error(peek(), "expected end of statement block, got " + describe(peek()));
    ++pos_;
  }

  ExprPtr node(ExprType type, const Token& at, ExprPtr a = nullptr, ExprPtr b = nullptr) {
    auto e = std::make_unique<Expr>();
    e->type = type;
    e->offset = at.offset;
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }
  // Computes the height of a finished node and refuses trees the evaluator could not walk safely.
  ExprPtr seal(ExprPtr e) {
    int h = 0;
    for (const Expr* c : {e->a.get(), e->b.get(), e->c.get()})
      if (c) h = std::max(h, c->depth);
    for (const auto& c : e->args)
      if (c) h = std::max(h, c->depth);
    for (const auto& kv : e->kwargs) h = std::max(h, kv.second->depth);
    e->depth = h + 1;
    if (e->depth > kMaxParseDepth)
      fail(ErrorKind::kFormat,
           "template syntax error at " + src_.where(e->offset) + ": expression nested too deeply");
    return e;
  }

  // Expressions, by precedence from loosest: condexpr > or > and > not > compare > +- > ~ > */ // %
  // > ** > unary > postfix/filters/tests.
  bool at_tuple_end(const std::vector<std::string>& extra_end) const;
  ExprPtr parse_tuple(bool with_condexpr, const std::vector<std::string>& extra_end = {},
                      bool explicit_parens = false);
  ExprPtr parse_expression() { return parse_condexpr(); }
  ExprPtr parse_condexpr();
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr binary_loop(ExprPtr (Parser::*sub)(), std::initializer_list<const char*> ops);
  ExprPtr parse_math1() { return binary_loop(&Parser::parse_concat, {"+", "-"}); }
  ExprPtr parse_concat() { return binary_loop(&Parser::parse_math2, {"~"}); }
  ExprPtr parse_math2() { return binary_loop(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  ExprPtr parse_pow() { return binary_loop(&Parser::parse_unary_filtered, {"**"}); }
  ExprPtr parse_unary_filtered() { return parse_unary(true); }
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  void parse_call_args(Expr& call);
  ExprPtr parse_subscript(ExprPtr e);
  std::string dotted_name();
  ExprPtr parse_postfix(ExprPtr e, bool with_filter);
  ExprPtr parse_filter(ExprPtr input);

  // Statements.
  Body parse_body(const std::vector<std::string>& end_names, std::string* found_end);
  std::unique_ptr<Stmt> parse_statement();
  std::vector<std::string> parse_targets(bool allow_attr, std::string* attr);
};

}  // namespace bitexact::tok::jinja
