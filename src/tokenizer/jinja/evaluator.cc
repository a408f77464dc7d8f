// Statement execution and expression evaluation. Scoping follows Jinja: `if` shares its scope,
// every loop iteration and macro call gets a fresh one (hence `namespace` for state carried across
// them).
#include "tokenizer/jinja/evaluator.h"

#include <cmath>

#include "core/error.h"

namespace bitexact::tok::jinja {

[[noreturn]] void undefined_error(const Value& v) {
  fail(ErrorKind::kInvalidArgument, v.text.empty() ? "value is undefined" : v.text);
}

static std::string undefined_hint(const Value& obj, const std::string& name) {
  if (obj.is_none()) return "'None' has no attribute '" + name + "'";
  return "'" + obj.type_name() + " object' has no attribute '" + name + "'";
}

std::string Evaluator::render(const Dict& globals) {
  globals_ = &globals;
  frames_.assign(1, {});
  std::string out;
  try {
    exec(program_.body, out);
  } catch (const Error& e) {
    // Runtime failures are the input's fault (kInvalidArgument) unless a limit was hit.
    fail(e.kind() == ErrorKind::kOutOfResources ? e.kind() : ErrorKind::kInvalidArgument,
         "chat template error at " + program_.source.where(where_) + ": " + e.what());
  }
  return out;
}

void Evaluator::step(uint64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps)
    fail(ErrorKind::kOutOfResources, "template exceeded its step limit (endless loop?)");
}

void Evaluator::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes)
    fail(ErrorKind::kOutOfResources, "template output exceeds its size limit");
}

Value Evaluator::lookup(const std::string& name) {
  for (size_t i = frames_.size(); i-- > 0;) {
    if (i != 0 && i < base_) continue;
    auto it = frames_[i].find(name);
    if (it != frames_[i].end()) return it->second;
  }
  if (const Value* v = globals_->find(name)) return *v;
  return Value::undefined("'" + name + "' is undefined");
}

ValueList Evaluator::iterate(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return {};
    case Kind::kList:
    case Kind::kTuple:
      return *v.items;
    case Kind::kDict: {
      ValueList keys;
      for (const auto& kv : v.dict->entries) keys.push_back(kv.first);
      return keys;
    }
    case Kind::kString: {
      ValueList chars;
      for (char32_t cp : utf8_decode(v.text)) {
        std::string s;
        utf8_append(s, cp);
        chars.push_back(Value::from_string(std::move(s)));
      }
      return chars;
    }
    default:
      fail(ErrorKind::kInvalidArgument, "'" + v.type_name() + "' object is not iterable");
  }
}

Evaluator::Flow Evaluator::exec(const Body& body, std::string& out) {
  for (const auto& sp : body) {
    const Stmt& s = *sp;
    switch (s.type) {
      case StmtType::kText:
        out += s.text;
        break;
      case StmtType::kOutput:
        out += to_str(eval(*s.expr));
        break;
      case StmtType::kIf: {
        size_t i = 0;
        while (i < s.conditions.size() && !eval(*s.conditions[i]).truthy()) ++i;
        Flow f = exec(i < s.conditions.size() ? s.bodies[i] : s.else_body, out);
        if (f != Flow::kNormal) return f;
        break;
      }
      case StmtType::kFor:
        exec_for(s, out);
        break;
      case StmtType::kSet:
        exec_set(s);
        break;
      case StmtType::kSetBlock: {
        std::string text;
        exec(s.body, text);
        Value v = Value::from_string(std::move(text));
        assign(s.targets[0], s.filter ? apply_filter_chain(*s.filter, std::move(v)) : std::move(v));
        break;
      }
      case StmtType::kFilterBlock: {
        std::string text;
        exec(s.body, text);
        out += to_str(apply_filter_chain(*s.filter, Value::from_string(std::move(text))));
        break;
      }
      case StmtType::kMacro:
        assign(s.targets[0], make_macro(s));
        break;
      case StmtType::kScope: {
        Flow f = exec(s.body, out);
        if (f != Flow::kNormal) return f;
        break;
      }
      case StmtType::kBreak:
        return Flow::kBreak;
      case StmtType::kContinue:
        return Flow::kContinue;
    }
    check_size(out.size());
  }
  return Flow::kNormal;
}

static void bind_targets(std::unordered_map<std::string, Value>& frame,
                         const std::vector<std::string>& targets, const Value& v) {
  if (targets.size() == 1) {
    frame[targets[0]] = v;
    return;
  }
  if (!v.is_sequence() && !v.is_string())
    fail(ErrorKind::kInvalidArgument, "cannot unpack non-iterable " + v.type_name() + " object");
  if (!v.is_sequence() || v.items->size() != targets.size())
    fail(ErrorKind::kInvalidArgument,
         "cannot unpack into " + std::to_string(targets.size()) + " names");
  for (size_t i = 0; i < targets.size(); ++i) frame[targets[i]] = (*v.items)[i];
}

Evaluator::Flow Evaluator::exec_for(const Stmt& s, std::string& out) {
  Value seq = eval(*s.expr);
  ValueList items = iterate(seq);
  if (s.filter) {  // `for x in xs if cond`: filtered before the loop, so loop.length counts
                   // survivors
    ValueList kept;
    for (const Value& item : items) {
      step();
      frames_.emplace_back();
      bind_targets(frames_.back(), s.targets, item);
      bool keep = eval(*s.filter).truthy();
      frames_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  int64_t n = int64_t(items.size());
  for (int64_t i = 0; i < n; ++i) {
    step();
    Dict loop;
    auto put = [&](const char* k, Value v) {
      loop.entries.emplace_back(Value::from_string(k), std::move(v));
    };
    put("index", Value::from_int(i + 1));
    put("index0", Value::from_int(i));
    put("revindex", Value::from_int(n - i));
    put("revindex0", Value::from_int(n - i - 1));
    put("first", Value::from_bool(i == 0));
    put("last", Value::from_bool(i == n - 1));
    put("length", Value::from_int(n));
    put("depth", Value::from_int(1));
    put("depth0", Value::from_int(0));
    put("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
    put("nextitem", i + 1 < n ? items[i + 1] : Value::undefined("there is no next item"));
    put("cycle", Value::function([i](Evaluator&, ValueList& args, KwArgs&) {
          if (args.empty()) fail(ErrorKind::kInvalidArgument, "no items for cycling given");
          return args[size_t(i) % args.size()];
        }));
    frames_.emplace_back();
    frames_.back()["loop"] = Value::from_dict(std::move(loop));
    bind_targets(frames_.back(), s.targets, items[i]);
    Flow f;
    try {
      f = exec(s.body, out);
    } catch (...) {
      frames_.pop_back();
      throw;
    }
    frames_.pop_back();
    if (f == Flow::kBreak) break;
  }
  if (n == 0) exec(s.else_body, out);
  return Flow::kNormal;
}

void Evaluator::exec_set(const Stmt& s) {
  Value v = eval(*s.expr);
  if (!s.attr.empty()) {
    Value ns = lookup(s.targets[0]);
    if (ns.kind != Kind::kNamespace)
      fail(ErrorKind::kInvalidArgument,
           "cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    if (v.kind == Kind::kNamespace || v.holds_namespace)
      fail(ErrorKind::kInvalidArgument, "a namespace cannot hold another namespace");
    if (!s.attr.empty() && s.attr[0] == '_')
      fail(ErrorKind::kInvalidArgument,
           "Chat templates cannot store underscore-prefixed attributes on a namespace");
    ns.dict->set(Value::from_string(s.attr), std::move(v));
    return;
  }
  bind_targets(frames_.back(), s.targets, v);
}

Value Evaluator::make_macro(const Stmt& s) {
  const Stmt* macro = &s;
  return Value::function([macro](Evaluator& ev, ValueList& args, KwArgs& kwargs) {
    if (args.size() > macro->params.size())
      fail(ErrorKind::kInvalidArgument, "macro '" + macro->targets[0] + "' takes not more than " +
                                            std::to_string(macro->params.size()) + " argument(s)");
    if (++ev.call_depth_ > ev.limits_.max_call_depth) {
      --ev.call_depth_;
      fail(ErrorKind::kOutOfResources, "macro calls nested too deeply");
    }
    ev.step();
    size_t saved_base = ev.base_;
    ev.frames_.emplace_back();
    ev.base_ = ev.frames_.size() - 1;
    std::string out;
    try {
      for (size_t i = 0; i < macro->params.size(); ++i) {
        Value v = Value::undefined("'" + macro->params[i] + "' is undefined");
        bool given = i < args.size();
        if (given) v = args[i];
        for (auto& [k, kv] : kwargs)
          if (k == macro->params[i]) {
            v = kv;
            given = true;
          }
        if (!given && macro->defaults[i]) v = ev.eval(*macro->defaults[i]);
        ev.assign(macro->params[i], std::move(v));
      }
      for (auto& [k, kv] : kwargs)
        if (std::find(macro->params.begin(), macro->params.end(), k) == macro->params.end())
          fail(ErrorKind::kInvalidArgument,
               "macro '" + macro->targets[0] + "' got an unexpected keyword argument '" + k + "'");
      ev.exec(macro->body, out);
    } catch (...) {
      ev.frames_.pop_back();
      ev.base_ = saved_base;
      --ev.call_depth_;
      throw;
    }
    ev.frames_.pop_back();
    ev.base_ = saved_base;
    --ev.call_depth_;
    return Value::from_string(std::move(out));
  });
}

Value Evaluator::call(const Value& fn, ValueList args, KwArgs kwargs) {
  if (fn.is_undefined()) undefined_error(fn);
  if (fn.kind != Kind::kCallable)
    fail(ErrorKind::kInvalidArgument, "'" + fn.type_name() + "' object is not callable");
  return (*fn.fn)(*this, args, kwargs);
}

Value Evaluator::filter(const std::string& name, Value input, ValueList& args, KwArgs& kwargs) {
  return apply_filter(*this, name, std::move(input), args, kwargs);
}

bool Evaluator::test(const std::string& name, const Value& v, ValueList& args) {
  return apply_test(*this, name, v, args);
}

Value Evaluator::apply_filter_chain(const Expr& f, Value input) {
  // f.a is the filter's input expression, or null in {% filter %}/{% set x | f %} blocks where the
  // rendered body is the input; chained filters nest as Filter(Filter(x)).
  if (f.a)
    input =
        f.a->type == ExprType::kFilter ? apply_filter_chain(*f.a, std::move(input)) : eval(*f.a);
  ValueList args;
  KwArgs kwargs;
  for (const auto& a : f.args) args.push_back(eval(*a));
  for (const auto& [k, a] : f.kwargs) kwargs.emplace_back(k, eval(*a));
  where_ = f.offset;
  return apply_filter(*this, f.name, std::move(input), args, kwargs);
}

Value Evaluator::get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Kind::kUndefined:
      undefined_error(obj);
    case Kind::kNamespace: {
      const Value* v = obj.dict->find(name);
      return v ? *v : Value::undefined("'Namespace' has no attribute '" + name + "'");
    }
    case Kind::kDict: {
      Value m = lookup_method(obj, name);
      if (!m.is_undefined()) return m;
      const Value* v = obj.dict->find(name);
      return v ? *v : Value::undefined(undefined_hint(obj, name));
    }
    default: {
      Value m = lookup_method(obj, name);
      return m.is_undefined() ? Value::undefined(undefined_hint(obj, name)) : m;
    }
  }
}

Value Evaluator::get_item(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Kind::kUndefined:
      undefined_error(obj);
    case Kind::kDict: {
      if (const Value* v = obj.dict->find(key)) return *v;
      break;
    }
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kString: {
      if (key.kind != Kind::kInt && key.kind != Kind::kBool) break;
      int64_t i = key.kind == Kind::kInt ? key.integer : key.boolean;
      if (obj.is_string()) {
        auto cps = utf8_decode(obj.text);
        int64_t n = int64_t(cps.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("string index out of range");
        std::string s;
        utf8_append(s, cps[size_t(i)]);
        return Value::from_string(std::move(s));
      }
      int64_t n = int64_t(obj.items->size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("list index out of range");
      return (*obj.items)[size_t(i)];
    }
    default:
      break;
  }
  if (key.is_string()) return get_attr(obj, key.text);
  return Value::undefined("'" + obj.type_name() + " object' has no attribute " + to_repr(key));
}

}  // namespace bitexact::tok::jinja
