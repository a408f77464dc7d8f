// Unit tests of the Jinja interpreter itself: expressions, whitespace control, loops and scoping,
// filters, input normalisation, errors with line/column, and the limits that keep it bounded.
#include <gtest/gtest.h>

#include <thread>

#include "core/error.h"
#include "tokenizer/jinja/chat_template.h"

namespace bitexact::tok {
namespace {

std::string render(const std::string& source, OrderedJson extra = OrderedJson::object(),
                   ChatTemplateLimits limits = {}) {
  ChatTemplateInputs in;
  in.messages = OrderedJson::parse(R"([{"role": "user", "content": "hi"}])");
  in.extra = std::move(extra);
  return ChatTemplate(source, limits).render(in);
}

// Runs source and returns the error kind and message, failing if it renders.
std::pair<ErrorKind, std::string> error_of(const std::string& source,
                                           ChatTemplateLimits limits = {}) {
  try {
    std::string out = render(source, OrderedJson::object(), limits);
    ADD_FAILURE() << "expected an error from " << source.substr(0, 200) << ", got "
                  << out.substr(0, 200);
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  return {ErrorKind::kInternal, ""};
}

struct Case {
  const char* source;
  const char* expected;
};

void expect_all(const std::vector<Case>& cases, const OrderedJson& vars = OrderedJson::object()) {
  for (const auto& c : cases) {
    try {
      EXPECT_EQ(render(c.source, vars), c.expected) << "template: " << c.source;
    } catch (const Error& e) {
      ADD_FAILURE() << "template: " << c.source << " threw " << e.what();
    }
  }
}

TEST(JinjaInterpreter, Expressions) {
  expect_all({
      {"{{ 1 + 2 * 3 }}", "7"},
      {"{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", "3 -4 2 3.5 1024"},
      {"{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.0 }} {{ 1e-05 }}", "0.30000000000000004 1e+16 1.0 1e-05"},
      {"{{ 'a' ~ 1 ~ none ~ nothing }}", "a1None"},
      {"{{ 'x' if 0 else 'y' }}|{{ 'x' if 0 }}|", "y||"},
      {"{{ 1 and 'a' }} {{ 0 or [] }} {{ not none }}", "a [] True"},
      {"{{ [1, 'a', none, true] }} {{ {'k': (1,)} }}", "[1, 'a', None, True] {'k': (1,)}"},
      {"{{ 'ab\\ncd'[::-1] }}|{{ [1, 2, 3][-2:] }}|{{ 'héllo'[1] }}", "dc\nba|[2, 3]|é"},
      {"{{ 'b' in {'b': 1} }} {{ 3 not in [1, 2] }} {{ 'ell' in 'hello' }}", "True True True"},
      {"{{ 1 < 2 < 3 }} {{ 1 == 1.0 == true }}", "True True"},
  });
}

TEST(JinjaInterpreter, WhitespaceControlMatchesTransformersSettings) {
  expect_all({
      // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
      {"a\n  {% if true %}\n  b\n  {% endif %}\nc", "a\n  b\nc"},
      {"a  {{- 'b' -}}  c", "abc"},
      {"a\n  {%+ if true %}b{% endif %}", "a\n  b"},
      {"x {#- comment -#} y", "xy"},
      {"{{ 'v' }}\nkept newline after a variable", "v\nkept newline after a variable"},
      {"one trailing newline is dropped\n", "one trailing newline is dropped"},
      {"crlf\r\n{% if true %}\r\nx{% endif %}", "crlf\nx"},
      {"{% raw %}{{ literal }}{% endraw %}", "{{ literal }}"},
  });
}

TEST(JinjaInterpreter, LoopsAndScoping) {
  expect_all({
      {"{% for x in [5, 6, 7] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first "
       "}}{{ loop.last }}"
       "{{ loop.length }};{% endfor %}",
       "103TrueFalse3;212FalseFalse3;321FalseTrue3;"},
      {"{% for x in [1, 2, 3] %}{{ loop.previtem }}>{{ loop.nextitem }} {% endfor %}",
       ">2 1>3 2> "},
      {"{% for x in range(10) if x % 3 == 0 %}{{ x }}/{{ loop.length }} {% endfor %}",
       "0/4 3/4 6/4 9/4 "},
      {"{% for x in [] %}a{% else %}empty{% endfor %}", "empty"},
      {"{% for x in range(9) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break "
       "%}{% endif %}{{ x }}"
       "{% endfor %}",
       "013"},
      {"{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}", "a=1 b=2 "},
      // A set inside a loop is local to one iteration; namespace carries state out.
      {"{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", "231"},
      {"{% set ns = namespace(n=0) %}{% for i in [1, 2] %}{% set ns.n = ns.n + i %}{% endfor %}{{ "
       "ns.n }}",
       "3"},
      {"{% if true %}{% set y = 2 %}{% endif %}{{ y }}", "2"},
      {"{% set b %}  x{{ 1 }}  {% endset %}[{{ b }}]", "[  x1  ]"},
      {"{% macro m(a, b='d') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(2, b='e') }}", "1d2e"},
  });
}

TEST(JinjaInterpreter, FiltersAndMethods) {
  OrderedJson vars = OrderedJson::parse(R"({"tl": [{"z": 1, "a": "é"}], "s": "  Hi there  "})");
  expect_all(
      {
          {"{{ tl | tojson }}", R"([{"z": 1, "a": "é"}])"},  // insertion order, ensure_ascii=False
          {"{{ tl[0] | tojson(indent=2) }}", "{\n  \"z\": 1,\n  \"a\": \"é\"\n}"},
          {"{{ tl[0] | tojson(ensure_ascii=true, sort_keys=true) }}", R"({"a": "\u00e9", "z": 1})"},
          {"[{{ s | trim }}] [{{ s.strip().lower() }}] {{ s.split() }}",
           "[Hi there] [hi there] ['Hi', 'there']"},
          {"{{ s.strip().startswith('Hi') }} {{ 'a,b'.split(',')[-1] }} {{ 'x' | upper }}",
           "True b X"},
          {"{{ [3, 1, 2] | sort | join(',') }} {{ [1, 2] | map('string') | list }} {{ nothing | "
           "default('d') }}",
           "1,2,3 ['1', '2'] d"},
          {"{{ [{'a': 1}, {'a': 0}] | selectattr('a') | list | length }} {{ {'k': 'v'}.get('k') }}",
           "1 v"},
      },
      vars);
}

TEST(JinjaInterpreter, InputsAreNormalisedLikeTransformers) {
  ChatTemplate t(
      "{{ messages | tojson }}|{{ bos_token is defined }}|{{ eos_token }}|{{ tools is none }}");
  ChatTemplateInputs in;
  in.messages = OrderedJson::parse(
      R"([{"role": "assistant", "content": "x", "tool_calls": null, "reasoning": "r"}])");
  in.eos_token = "</s>";
  EXPECT_EQ(
      t.render(in),
      R"([{"thinking": "r", "role": "assistant", "content": "x", "reasoning": "r", "reasoning_content": "r"}])"
      "|False|</s>|True");
  in.messages = OrderedJson::array();
  EXPECT_THROW(t.render(in), Error);
}

TEST(JinjaInterpreter, ErrorsSayWhere) {
  auto [kind, msg] = error_of("line one\n{% if true %}\n  {{ 1 + }}\n{% endif %}");
  EXPECT_EQ(kind, ErrorKind::kFormat);
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;

  std::tie(kind, msg) = error_of("{% for x in y %}");
  EXPECT_EQ(kind, ErrorKind::kFormat);
  EXPECT_NE(msg.find("endfor"), std::string::npos) << msg;

  std::tie(kind, msg) = error_of("{{ x | no_such_filter }}");
  EXPECT_EQ(kind, ErrorKind::kFormat);
  EXPECT_NE(msg.find("no_such_filter"), std::string::npos) << msg;

  std::tie(kind, msg) = error_of("\n\n{{ raise_exception('roles must alternate') }}");
  EXPECT_EQ(kind, ErrorKind::kInvalidArgument);
  EXPECT_NE(msg.find("roles must alternate"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;

  std::tie(kind, msg) = error_of("{{ missing.attr }}");
  EXPECT_EQ(kind, ErrorKind::kInvalidArgument);
  EXPECT_NE(msg.find("'missing' is undefined"), std::string::npos) << msg;

  // Unknown filters inside an if only fail when reached, as in jinja2.
  EXPECT_EQ(render("{% if false %}{{ x | no_such_filter }}{% endif %}ok"), "ok");
  EXPECT_EQ(error_of("{{ [].append(1) }}").first, ErrorKind::kInvalidArgument);
}

TEST(JinjaInterpreter, LimitsBoundTimeMemoryAndRecursion) {
  ChatTemplateLimits small;
  small.max_steps = 100000;
  small.max_output_bytes = 1 << 20;
  EXPECT_EQ(
      error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               small)
          .first,
      ErrorKind::kOutOfResources);
  EXPECT_EQ(error_of("{% for i in range(1000) %}{{ 'x' * 10000 }}{% endfor %}", small).first,
            ErrorKind::kOutOfResources);
  EXPECT_EQ(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").first,
            ErrorKind::kOutOfResources);
  EXPECT_EQ(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").first,
            ErrorKind::kFormat);
  EXPECT_EQ(error_of("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}").first,
            ErrorKind::kFormat);
  EXPECT_EQ(error_of("{{ 1" +
                     [] {
                       std::string s;
                       for (int i = 0; i < 5000; ++i) s += " + 1";
                       return s;
                     }() +
                     " }}")
                .first,
            ErrorKind::kFormat);
  // Deep values built at run time are refused before printing or freeing them could recurse too
  // far.
  EXPECT_EQ(error_of("{% set ns = namespace(v=[]) %}{% for i in range(10000) %}{% set ns.v = "
                     "[ns.v] %}{% endfor %}"
                     "{{ ns.v }}")
                .first,
            ErrorKind::kInvalidArgument);
}

TEST(JinjaInterpreter, RenderIsThreadSafe) {
  ChatTemplate t(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ m.content }}"
      "{% endfor %}{{ ns.n }}");
  ChatTemplateInputs in;
  in.messages =
      OrderedJson::parse(R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])");
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) good += t.render(in) == "ab2";
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 800);
}

}  // namespace
}  // namespace bitexact::tok
