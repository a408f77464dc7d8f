// Expression evaluation: names, literals, attribute/item access, slices, calls, filters, tests and
// operators, each with Python's semantics (int/float promotion, floor division, `and`/`or`
// operands).
#include <algorithm>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "tokenizer/jinja/evaluator.h"

namespace bitexact::tok::jinja {

static Value slice(const Value& obj, const Value* parts[3]) {
  if (obj.is_undefined()) undefined_error(obj);
  auto as_index = [](const Value* v, const char* what) -> std::optional<int64_t> {
    if (!v || v->is_none()) return std::nullopt;
    if (v->kind == Kind::kInt) return v->integer;
    if (v->kind == Kind::kBool) return int64_t(v->boolean);
    fail(ErrorKind::kInvalidArgument, std::string("slice ") + what + " must be an integer or None");
  };
  auto start = as_index(parts[0], "start"), stop = as_index(parts[1], "stop"),
       step = as_index(parts[2], "step");
  int64_t st = step.value_or(1);
  if (st == 0) fail(ErrorKind::kInvalidArgument, "slice step cannot be zero");
  bool is_string = obj.is_string();
  if (!is_string && !obj.is_sequence())
    fail(ErrorKind::kInvalidArgument, "'" + obj.type_name() + "' object is not subscriptable");
  std::vector<char32_t> cps;
  if (is_string) cps = utf8_decode(obj.text);
  int64_t n = is_string ? int64_t(cps.size()) : int64_t(obj.items->size());
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= n) {
      x = st < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t b = adjust(start, st < 0 ? n - 1 : 0), e = adjust(stop, st < 0 ? -1 : n);
  std::vector<char32_t> out_cps;
  ValueList out_items;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
    if (is_string)
      out_cps.push_back(cps[size_t(i)]);
    else
      out_items.push_back((*obj.items)[size_t(i)]);
  }
  if (is_string) return Value::from_string(utf8_encode(out_cps));
  return obj.kind == Kind::kTuple ? Value::tuple(std::move(out_items))
                                  : Value::list(std::move(out_items));
}

Value Evaluator::eval(const Expr& e) {
  switch (e.type) {
    case ExprType::kLiteral:
      return e.literal;
    case ExprType::kName:
      return lookup(e.name);
    case ExprType::kList:
    case ExprType::kTuple: {
      ValueList items;
      for (const auto& a : e.args) items.push_back(eval(*a));
      return e.type == ExprType::kList ? Value::list(std::move(items))
                                       : Value::tuple(std::move(items));
    }
    case ExprType::kDict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        d.set(k, eval(*e.args[i + 1]));
      }
      return Value::from_dict(std::move(d));
    }
    case ExprType::kGetAttr: {
      Value obj = eval(*e.a);
      where_ = e.offset;
      return get_attr(obj, e.name);
    }
    case ExprType::kGetItem: {
      Value obj = eval(*e.a);
      Value key = eval(*e.b);
      where_ = e.offset;
      return get_item(obj, key);
    }
    case ExprType::kSlice: {
      Value obj = eval(*e.a);
      Value parts[3];
      const Value* ptrs[3] = {nullptr, nullptr, nullptr};
      for (int i = 0; i < 3; ++i)
        if (e.args[i]) ptrs[i] = &(parts[i] = eval(*e.args[i]));
      where_ = e.offset;
      return slice(obj, ptrs);
    }
    case ExprType::kCall: {
      Value fn = eval(*e.a);
      ValueList args;
      KwArgs kwargs;
      for (const auto& a : e.args) args.push_back(eval(*a));
      for (const auto& [k, a] : e.kwargs) kwargs.emplace_back(k, eval(*a));
      where_ = e.offset;
      return call(fn, std::move(args), std::move(kwargs));
    }
    case ExprType::kFilter:
      return apply_filter_chain(e, Value());
    case ExprType::kTest: {
      Value v = eval(*e.a);
      ValueList args;
      for (const auto& a : e.args) args.push_back(eval(*a));
      where_ = e.offset;
      return Value::from_bool(apply_test(*this, e.name, v, args) != e.negated);
    }
    case ExprType::kUnary: {
      Value v = eval(*e.a);
      where_ = e.offset;
      if (e.name == "not") return Value::from_bool(!v.truthy());
      if (v.is_undefined()) undefined_error(v);
      if (v.kind == Kind::kFloat) return Value::from_float(e.name == "-" ? -v.real : v.real);
      if (v.kind == Kind::kInt || v.kind == Kind::kBool) {
        int64_t i = v.kind == Kind::kInt ? v.integer : v.boolean;
        if (e.name == "-" && i == INT64_MIN) fail(ErrorKind::kInvalidArgument, "integer overflow");
        return Value::from_int(e.name == "-" ? -i : i);
      }
      fail(ErrorKind::kInvalidArgument,
           "bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
    }
    case ExprType::kBinary: {
      Value a = eval(*e.a);
      Value b = eval(*e.b);
      where_ = e.offset;
      return binary(e.name, a, b);
    }
    case ExprType::kAnd: {
      Value a = eval(*e.a);
      return a.truthy() ? eval(*e.b) : a;
    }
    case ExprType::kOr: {
      Value a = eval(*e.a);
      return a.truthy() ? a : eval(*e.b);
    }
    case ExprType::kCompare: {
      Value left = eval(*e.args[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i + 1]);
        where_ = e.offset;
        const std::string& op = e.ops[i];
        bool r;
        if (op == "==")
          r = equals(left, right);
        else if (op == "!=")
          r = !equals(left, right);
        else if (op == "in")
          r = contains(right, left);
        else if (op == "not in")
          r = !contains(right, left);
        else {
          if (left.is_undefined()) undefined_error(left);
          if (right.is_undefined()) undefined_error(right);
          int c = compare(left, right);
          r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
        }
        if (!r) return Value::from_bool(false);
        left = std::move(right);
      }
      return Value::from_bool(true);
    }
    case ExprType::kCondition: {
      if (eval(*e.b).truthy()) return eval(*e.a);
      return e.c ? eval(*e.c)
                 : Value::undefined("the inline if-expression on " +
                                    program_.source.where(e.offset) +
                                    " evaluated to false and no else section was defined.");
    }
  }
  return Value();
}

static int64_t as_int(const Value& v) {
  return v.kind == Kind::kInt ? v.integer : int64_t(v.boolean);
}
static double as_real(const Value& v) {
  return v.kind == Kind::kFloat ? v.real : double(as_int(v));
}

Value Evaluator::binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = to_str(a);
    s += to_str(b);
    check_size(s.size());
    return Value::from_string(std::move(s));
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  auto unsupported = [&]() -> Value {
    fail(ErrorKind::kInvalidArgument, "unsupported operand type(s) for " + op + ": '" +
                                          a.type_name() + "' and '" + b.type_name() + "'");
  };
  if (a.is_number() && b.is_number()) {
    bool ints = a.kind != Kind::kFloat && b.kind != Kind::kFloat;
    int64_t x = ints ? as_int(a) : 0, y = ints ? as_int(b) : 0, r = 0;
    double p = as_real(a), q = as_real(b);
    auto overflow = []() -> Value { fail(ErrorKind::kInvalidArgument, "integer overflow"); };
    if (op == "+")
      return ints ? (__builtin_add_overflow(x, y, &r) ? overflow() : Value::from_int(r))
                  : Value::from_float(p + q);
    if (op == "-")
      return ints ? (__builtin_sub_overflow(x, y, &r) ? overflow() : Value::from_int(r))
                  : Value::from_float(p - q);
    if (op == "*")
      return ints ? (__builtin_mul_overflow(x, y, &r) ? overflow() : Value::from_int(r))
                  : Value::from_float(p * q);
    if (op == "/") {
      if (q == 0) fail(ErrorKind::kInvalidArgument, "division by zero");
      return Value::from_float(p / q);
    }
    if (op == "//" || op == "%") {
      if (q == 0) fail(ErrorKind::kInvalidArgument, "integer division or modulo by zero");
      if (ints) {
        if (x == INT64_MIN && y == -1) return overflow();
        int64_t d = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          d -= 1;
          m += y;
        }
        return Value::from_int(op == "//" ? d : m);
      }
      // CPython's float_floor_div / float_rem.
      double mod = std::fmod(p, q), div = (p - mod) / q;
      if (mod != 0) {
        if ((q < 0) != (mod < 0)) {
          mod += q;
          div -= 1.0;
        }
      } else {
        mod = std::copysign(0.0, q);
      }
      double fd = std::copysign(0.0, p / q);
      if (div != 0) {
        fd = std::floor(div);
        if (div - fd > 0.5) fd += 1.0;
      }
      return Value::from_float(op == "%" ? mod : fd);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t acc = 1;
        for (int64_t i = 0; i < y; ++i) {
          if (__builtin_mul_overflow(acc, x, &acc)) return overflow();
          if (acc == 0 || acc == 1) break;
          if (acc == -1) {
            acc = (y - i - 1) % 2 == 0 ? -1 : 1;
            break;
          }
        }
        return Value::from_int(acc);
      }
      if (p == 0 && q < 0)
        fail(ErrorKind::kInvalidArgument, "0.0 cannot be raised to a negative power");
      return Value::from_float(std::pow(p, q));
    }
    return unsupported();
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_size(a.text.size() + b.text.size());
      return Value::from_string(a.text + b.text);
    }
    if (a.kind == b.kind && a.is_sequence()) {
      check_size(a.items->size() + b.items->size());
      ValueList items = *a.items;
      items.insert(items.end(), b.items->begin(), b.items->end());
      return a.kind == Kind::kTuple ? Value::tuple(std::move(items))
                                    : Value::list(std::move(items));
    }
  }
  if (op == "*") {
    const Value& seq = a.is_number() ? b : a;
    const Value& count = a.is_number() ? a : b;
    if (count.kind == Kind::kInt || count.kind == Kind::kBool) {
      int64_t n = std::max<int64_t>(0, as_int(count));
      if (seq.is_string()) {
        check_size(seq.text.size() * size_t(std::min<int64_t>(n, 1 << 30)));
        std::string s;
        for (int64_t i = 0; i < n; ++i) s += seq.text;
        return Value::from_string(std::move(s));
      }
      if (seq.is_sequence()) {
        check_size(seq.items->size() * size_t(std::min<int64_t>(n, 1 << 30)) * 16);
        ValueList items;
        for (int64_t i = 0; i < n; ++i)
          items.insert(items.end(), seq.items->begin(), seq.items->end());
        return seq.kind == Kind::kTuple ? Value::tuple(std::move(items))
                                        : Value::list(std::move(items));
      }
    }
  }
  return unsupported();
}

}  // namespace bitexact::tok::jinja
