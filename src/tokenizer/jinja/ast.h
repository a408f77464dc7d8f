// Syntax tree of a parsed template: expressions (Expr) and statements (Stmt). One generic node type
// each, with a tag, keeps the parser and evaluator short; the comments say which fields a tag uses.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/value.h"

namespace bitexact::tok::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprType {
  kLiteral,   // literal
  kName,      // name
  kList,      // args
  kTuple,     // args
  kDict,      // args: key, value, key, value, ...
  kGetAttr,   // a.name
  kGetItem,   // a[b]
  kSlice,     // a[args[0]:args[1]:args[2]], each may be null
  kCall,      // a(args, kwargs)
  kFilter,    // a | name(args, kwargs); a is null inside {% filter %} blocks
  kTest,      // a is [not: negated] name(args)
  kUnary,     // name ("-", "+", "not") a
  kBinary,    // a name b, name one of + - * / // % ** ~
  kAnd,       // a and b (returns an operand, as Python)
  kOr,        // a or b
  kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...
  kCondition  // a if b else c (c may be null: Undefined)
};

struct Expr {
  ExprType type;
  size_t offset = 0;  // in the source, for errors
  int depth = 1;      // height of this subtree, capped by the parser so evaluation cannot overflow
  Value literal;
  std::string name;
  bool negated = false;
  ExprPtr a, b, c;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

enum class StmtType {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // conditions[i] -> bodies[i]; else_body
  kFor,       // for targets in expr [if filter] body [else else_body]
  kSet,       // targets = expr, or (attr non-empty) targets[0].attr = expr
  kSetBlock,  // targets[0] = rendered body, through filter (null: none)
  kMacro,     // macro targets[0](params = defaults) body
  kBreak,
  kContinue,
  kFilterBlock,  // rendered body | filter
  kScope,        // body rendered as-is ({% generation %}: transformers' assistant-mask tag)
};

struct Stmt {
  StmtType type;
  size_t offset = 0;
  std::string text;
  ExprPtr expr, filter;
  std::vector<std::string> targets;
  std::string attr;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body body, else_body;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param, null where none
};

struct Program {
  Source source;
  Body body;
};

// Parses a whole template; throws Error(kFormat) with line and column on syntax errors.
std::unique_ptr<Program> parse_template(const std::string& raw_source);

}  // namespace bitexact::tok::jinja
