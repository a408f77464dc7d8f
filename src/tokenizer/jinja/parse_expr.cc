// Expression grammar of the parser, following jinja2/parser.py's precedence (condexpr > or > and >
// not > compare > +- > ~ > */ // % > ** > unary > filters), building sealed (height-checked) nodes.
#include <cerrno>
#include <cstdlib>

#include "tokenizer/jinja/parser.h"

namespace bitexact::tok::jinja {

bool Parser::at_tuple_end(const std::vector<std::string>& extra_end) const {
  const Token& t = peek();
  if (t.type == Tok::kVarEnd || t.type == Tok::kBlockEnd || t.type == Tok::kEof) return true;
  if (t.type == Tok::kOp && (t.value == ")" || t.value == "]" || t.value == "}")) return true;
  return t.type == Tok::kName &&
         std::find(extra_end.begin(), extra_end.end(), t.value) != extra_end.end();
}

ExprPtr Parser::parse_tuple(bool with_condexpr, const std::vector<std::string>& extra_end,
                            bool explicit_parens) {
  const Token& start = peek();
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) expect_op(",");
    if (at_tuple_end(extra_end)) break;
    items.push_back(with_condexpr ? parse_condexpr() : parse_or());
    if (is_op(","))
      is_tuple = true;
    else
      break;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) error(peek(), "expected an expression, got " + describe(peek()));
  }
  auto t = node(ExprType::kTuple, start);
  t->args = std::move(items);
  return seal(std::move(t));
}

ExprPtr Parser::parse_condexpr() {
  ExprPtr e = parse_or();
  while (is_name("if")) {
    const Token& at = next();
    auto c = node(ExprType::kCondition, at, std::move(e), parse_or());
    if (skip_name("else")) c->c = parse_condexpr();
    e = seal(std::move(c));
  }
  return e;
}

ExprPtr Parser::parse_or() {
  ExprPtr e = parse_and();
  while (is_name("or")) {
    const Token& at = next();
    e = seal(node(ExprType::kOr, at, std::move(e), parse_and()));
  }
  return e;
}

ExprPtr Parser::parse_and() {
  ExprPtr e = parse_not();
  while (is_name("and")) {
    const Token& at = next();
    e = seal(node(ExprType::kAnd, at, std::move(e), parse_not()));
  }
  return e;
}

ExprPtr Parser::parse_not() {
  if (is_name("not")) {
    const Token& at = next();
    auto e = node(ExprType::kUnary, at, parse_not());
    e->name = "not";
    return seal(std::move(e));
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
  const Token& start = peek();
  ExprPtr first = parse_math1();
  ExprPtr cmp;
  while (true) {
    std::string op;
    const Token& t = peek();
    if (t.type == Tok::kOp && (t.value == "==" || t.value == "!=" || t.value == "<" ||
                               t.value == "<=" || t.value == ">" || t.value == ">=")) {
      op = next().value;
    } else if (is_name("in")) {
      op = next().value;
    } else if (is_name("not") && is_name("in", 1)) {
      pos_ += 2;
      op = "not in";
    } else {
      break;
    }
    if (!cmp) {
      cmp = node(ExprType::kCompare, start);
      cmp->args.push_back(std::move(first));
    }
    cmp->ops.push_back(op);
    cmp->args.push_back(parse_math1());
    if (cmp->args.size() > kMaxParseDepth) error(t, "comparison chain too long");
  }
  return cmp ? seal(std::move(cmp)) : std::move(first);
}

ExprPtr Parser::binary_loop(ExprPtr (Parser::*sub)(), std::initializer_list<const char*> ops) {
  ExprPtr e = (this->*sub)();
  while (true) {
    const char* op = nullptr;
    for (const char* o : ops)
      if (is_op(o)) op = o;
    if (!op) return e;
    const Token& at = next();
    auto b = node(ExprType::kBinary, at, std::move(e), (this->*sub)());
    b->name = op;
    e = seal(std::move(b));
  }
}

ExprPtr Parser::parse_unary(bool with_filter) {
  if (++nesting_ > kMaxParseDepth) error(peek(), "expression nested too deeply");
  ExprPtr e;
  if (is_op("-") || is_op("+")) {
    const Token& at = next();
    e = node(ExprType::kUnary, at, parse_unary(false));
    e->name = at.value;
    e = seal(std::move(e));
  } else {
    e = parse_primary();
  }
  e = parse_postfix(std::move(e), with_filter);
  --nesting_;
  return e;
}

ExprPtr Parser::parse_primary() {
  const Token& t = peek();
  switch (t.type) {
    case Tok::kName: {
      ++pos_;
      auto e = node(ExprType::kLiteral, t);
      if (t.value == "true" || t.value == "True")
        e->literal = Value::from_bool(true);
      else if (t.value == "false" || t.value == "False")
        e->literal = Value::from_bool(false);
      else if (t.value == "none" || t.value == "None")
        e->literal = Value::none();
      else {
        e->type = ExprType::kName;
        e->name = t.value;
      }
      return e;
    }
    case Tok::kString: {
      std::string s;
      while (peek().type == Tok::kString) s += next().value;
      auto e = node(ExprType::kLiteral, t);
      e->literal = Value::from_string(std::move(s));
      return e;
    }
    case Tok::kInt:
    case Tok::kFloat: {
      ++pos_;
      auto e = node(ExprType::kLiteral, t);
      errno = 0;
      if (t.type == Tok::kFloat)
        e->literal = Value::from_float(std::strtod(t.value.c_str(), nullptr));
      else
        e->literal = Value::from_int(std::strtoll(t.value.c_str(), nullptr, 10));
      if (errno == ERANGE && t.type == Tok::kInt) error(t, "integer literal too large");
      return e;
    }
    case Tok::kOp:
      if (t.value == "(") {
        ++pos_;
        ExprPtr e = parse_tuple(true, {}, true);
        expect_op(")");
        return e;
      }
      if (t.value == "[" || t.value == "{") {
        bool is_dict = t.value == "{";
        ++pos_;
        auto e = node(is_dict ? ExprType::kDict : ExprType::kList, t);
        const char* close = is_dict ? "}" : "]";
        while (!is_op(close)) {
          if (!e->args.empty()) expect_op(",");
          if (is_op(close)) break;
          e->args.push_back(parse_expression());
          if (is_dict) {
            expect_op(":");
            e->args.push_back(parse_expression());
          }
        }
        expect_op(close);
        return seal(std::move(e));
      }
      [[fallthrough]];
    default:
      error(t, "unexpected " + describe(t));
  }
}

void Parser::parse_call_args(Expr& call) {
  expect_op("(");
  while (!is_op(")")) {
    if (!call.args.empty() || !call.kwargs.empty()) expect_op(",");
    if (is_op(")")) break;
    if (is_op("*") || is_op("**")) error(peek(), "*args and **kwargs are not supported");
    if (peek().type == Tok::kName && is_op("=", 1)) {
      std::string key = next().value;
      ++pos_;
      call.kwargs.emplace_back(key, parse_expression());
    } else {
      if (!call.kwargs.empty()) error(peek(), "positional argument after keyword argument");
      call.args.push_back(parse_expression());
    }
  }
  expect_op(")");
}

ExprPtr Parser::parse_subscript(ExprPtr e) {
  const Token& at = next();
  if (at.value == ".") {
    const Token& t = next();
    if (t.type == Tok::kName) {
      auto g = node(ExprType::kGetAttr, at, std::move(e));
      g->name = t.value;
      return seal(std::move(g));
    }
    if (t.type != Tok::kInt) error(t, "expected name or number after '.'");
    auto idx = node(ExprType::kLiteral, t);
    idx->literal = Value::from_int(std::strtoll(t.value.c_str(), nullptr, 10));
    return seal(node(ExprType::kGetItem, at, std::move(e), std::move(idx)));
  }
  // '[': an index or a slice a:b:c (a tuple index like x[1, 2] is not supported by Python lists).
  ExprPtr parts[3];
  int colons = 0;
  while (true) {
    if (is_op(":")) {
      if (++colons > 2) error(peek(), "too many ':' in slice");
      ++pos_;
      continue;
    }
    if (is_op("]")) break;
    if (parts[colons]) error(peek(), "expected ']' or ':', got " + describe(peek()));
    parts[colons] = parse_expression();
  }
  expect_op("]");
  if (colons == 0) {
    if (!parts[0]) error(at, "expected an index inside []");
    return seal(node(ExprType::kGetItem, at, std::move(e), std::move(parts[0])));
  }
  auto s = node(ExprType::kSlice, at, std::move(e));
  for (auto& p : parts) s->args.push_back(std::move(p));
  return seal(std::move(s));
}

std::string Parser::dotted_name() {
  std::string n = expect_name();
  while (is_op(".") && peek(1).type == Tok::kName) {
    pos_ += 1;
    n += "." + next().value;
  }
  return n;
}

ExprPtr Parser::parse_postfix(ExprPtr e, bool with_filter) {
  while (true) {
    if (is_op(".") || is_op("[")) {
      e = parse_subscript(std::move(e));
    } else if (is_op("(")) {
      auto c = node(ExprType::kCall, peek(), std::move(e));
      parse_call_args(*c);
      e = seal(std::move(c));
    } else if (with_filter && is_op("|")) {
      e = parse_filter(std::move(e));
    } else if (with_filter && is_name("is")) {
      const Token& at = next();
      auto t = node(ExprType::kTest, at, std::move(e));
      t->negated = skip_name("not");
      t->name = dotted_name();
      const Token& n = peek();
      if (is_op("(")) {
        parse_call_args(*t);
      } else if ((n.type == Tok::kName && n.value != "else" && n.value != "or" &&
                  n.value != "and") ||
                 n.type == Tok::kString || n.type == Tok::kInt || n.type == Tok::kFloat ||
                 is_op("[") || is_op("{")) {
        if (is_name("is")) error(n, "You cannot chain multiple tests with is");
        t->args.push_back(parse_postfix(parse_primary(), false));
      }
      e = seal(std::move(t));
    } else {
      return e;
    }
  }
}

ExprPtr Parser::parse_filter(ExprPtr input) {
  const Token& at = next();  // '|'
  auto f = node(ExprType::kFilter, at, std::move(input));
  f->name = dotted_name();
  if (is_op("(")) parse_call_args(*f);
  return seal(std::move(f));
}

}  // namespace bitexact::tok::jinja
