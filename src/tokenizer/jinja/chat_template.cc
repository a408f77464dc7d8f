// ChatTemplate: parses once (with jinja2's compile-time checks for unknown filters/tests), then
// renders with transformers' variables: messages, tools, documents, add_generation_prompt, tokens.
#include "tokenizer/jinja/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"

namespace bitexact::tok {
using namespace jinja;

namespace {

// jinja2 rejects unknown filters and tests when compiling, except inside `if` statements and
// conditional expressions ("soft" frames), where they only fail if evaluated.
void check_expr(const Program& p, const Expr* e, bool soft) {
  if (!e) return;
  soft = soft || e->type == ExprType::kCondition;
  if (!soft && ((e->type == ExprType::kFilter && !is_known_filter(e->name)) ||
                (e->type == ExprType::kTest && !is_known_test(e->name))))
    fail(ErrorKind::kFormat, "template syntax error at " + p.source.where(e->offset) + ": No " +
                                 (e->type == ExprType::kFilter ? "filter" : "test") + " named '" +
                                 e->name + "'.");
  for (const Expr* c : {e->a.get(), e->b.get(), e->c.get()}) check_expr(p, c, soft);
  for (const auto& c : e->args) check_expr(p, c.get(), soft);
  for (const auto& kv : e->kwargs) check_expr(p, kv.second.get(), soft);
}

void check_body(const Program& p, const Body& body, bool soft) {
  for (const auto& s : body) {
    bool inner_soft = soft;
    if (s->type == StmtType::kIf) inner_soft = true;
    if (s->type == StmtType::kFor || s->type == StmtType::kMacro ||
        s->type == StmtType::kSetBlock || s->type == StmtType::kFilterBlock ||
        s->type == StmtType::kScope)
      inner_soft = false;  // jinja2 gives loops, macros and blocks a fresh (hard) frame
    check_expr(p, s->expr.get(), s->type == StmtType::kIf ? true : soft);
    check_expr(p, s->filter.get(), inner_soft);
    for (const auto& c : s->conditions) check_expr(p, c.get(), true);
    for (const auto& d : s->defaults) check_expr(p, d.get(), false);
    for (const auto& b : s->bodies) check_body(p, b, inner_soft);
    check_body(p, s->body, inner_soft);
    check_body(p, s->else_body, inner_soft);
  }
}

// transformers' _alias_reasoning_fields: {"thinking": r, **message, "reasoning_content": r}.
OrderedJson alias_reasoning(const OrderedJson& message) {
  static const char* kFields[] = {"reasoning_content", "thinking", "reasoning"};
  const OrderedJson* reasoning = nullptr;
  for (const char* f : kFields) {
    auto it = message.find(f);
    if (it != message.end() && !it->is_null()) {
      reasoning = &*it;
      break;
    }
  }
  if (!reasoning) return message;
  OrderedJson out = OrderedJson::object();
  out["thinking"] = *reasoning;
  for (auto it = message.begin(); it != message.end(); ++it) out[it.key()] = it.value();
  out["reasoning_content"] = *reasoning;
  return out;
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source, ChatTemplateLimits limits)
    : program_(parse_template(source)), limits_(limits) {
  check_body(*program_, program_->body, false);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const ChatTemplateInputs& in) const {
  if (!in.messages.is_array())
    fail(ErrorKind::kInvalidArgument, "chat template: messages must be an array");
  if (in.messages.empty())
    fail(ErrorKind::kInvalidArgument,
         "Cannot apply chat template to an empty conversation. Provide at least one message.");
  if (!in.tools.is_null() && !in.tools.is_array())
    fail(ErrorKind::kInvalidArgument, "chat template: tools must be null or an array");
  if (!in.extra.is_null() && !in.extra.is_object())
    fail(ErrorKind::kInvalidArgument, "chat template: extra must be an object");

  // apply_chat_template drops null-valued message keys, then aliases reasoning fields.
  OrderedJson messages = OrderedJson::array();
  for (const auto& m : in.messages) {
    if (!m.is_object())
      fail(ErrorKind::kInvalidArgument, "Chat messages should be dicts, but got " + m.dump());
    OrderedJson kept = OrderedJson::object();
    for (auto it = m.begin(); it != m.end(); ++it)
      if (!it.value().is_null()) kept[it.key()] = it.value();
    messages.push_back(alias_reasoning(kept));
  }

  Dict globals;
  add_builtin_globals(globals);
  auto set = [&](const std::string& k, Value v) {
    globals.set(Value::from_string(k), std::move(v));
  };
  if (!in.bos_token.empty()) set("bos_token", Value::from_string(in.bos_token));
  if (!in.eos_token.empty()) set("eos_token", Value::from_string(in.eos_token));
  if (in.extra.is_object())
    for (auto it = in.extra.begin(); it != in.extra.end(); ++it)
      set(it.key(), from_json(it.value()));
  set("messages", from_json(messages));
  set("tools", from_json(in.tools));
  set("documents", Value::none());
  set("add_generation_prompt", Value::from_bool(in.add_generation_prompt));

  Evaluator evaluator(*program_, limits_);
  return evaluator.render(globals);
}

}  // namespace bitexact::tok
