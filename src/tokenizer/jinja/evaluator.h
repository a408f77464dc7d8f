// Renders a parsed Program: scopes (a fresh one per loop iteration and macro call, as Jinja),
// expression evaluation with Python semantics, and limits that bound time, memory and recursion.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/chat_template.h"

namespace bitexact::tok::jinja {

class Evaluator {
 public:
  Evaluator(const Program& program, const ChatTemplateLimits& limits)
      : program_(program), limits_(limits) {}

  // Renders with `globals` as the outermost scope; errors become Error(kInvalidArgument) with a
  // location.
  std::string render(const Dict& globals);

  Value eval(const Expr& e);
  Value call(const Value& fn, ValueList args, KwArgs kwargs);
  Value get_attr(const Value& obj, const std::string& name);
  Value get_item(const Value& obj, const Value& key);
  Value filter(const std::string& name, Value input, ValueList& args, KwArgs& kwargs);
  bool test(const std::string& name, const Value& v, ValueList& args);
  void step(uint64_t n = 1);            // counts work against ChatTemplateLimits::max_steps
  void check_size(size_t bytes) const;  // refuses strings past ChatTemplateLimits::max_output_bytes
  ValueList iterate(const Value& v);    // Python iter(): list items, dict keys, string chars

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  Flow exec(const Body& body, std::string& out);
  Flow exec_for(const Stmt& s, std::string& out);
  void exec_set(const Stmt& s);
  Value make_macro(const Stmt& s);
  Value apply_filter_chain(const Expr& f, Value input);
  Value binary(const std::string& op, const Value& a, const Value& b);
  Value lookup(const std::string& name);
  void assign(const std::string& name, Value v) { frames_.back()[name] = std::move(v); }

  const Program& program_;
  ChatTemplateLimits limits_;
  std::vector<std::unordered_map<std::string, Value>> frames_;
  size_t base_ =
      1;  // lowest frame visible besides frame 0 (a macro call hides its caller's frames)
  const Dict* globals_ = nullptr;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
  size_t where_ = 0;  // offset of the expression being evaluated, for error locations
};

// Builtins (builtins.cc): tests, filters, methods of str/dict/list and global functions.
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);
Value lookup_method(const Value& obj, const std::string& name);  // bound method or Undefined
Value apply_filter(Evaluator& ev, const std::string& name, Value input, ValueList& args,
                   KwArgs& kwargs);
bool apply_test(Evaluator& ev, const std::string& name, const Value& v, ValueList& args);
bool contains(const Value& container, const Value& item);  // Python `item in container`
[[noreturn]] void undefined_error(const Value& v);

}  // namespace bitexact::tok::jinja
