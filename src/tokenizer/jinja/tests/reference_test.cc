// Compares ChatTemplate::render byte for byte with transformers' apply_chat_template on the cases
// that scripts/chat_template_reference.py writes (BITEXACT_CHAT_REF or <build>/chatref).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "tokenizer/jinja/chat_template.h"

namespace bitexact::tok {
namespace {

std::string ref_dir() {
  const char* env = std::getenv("BITEXACT_CHAT_REF");
  return env && *env ? env : BITEXACT_CHATREF_DEFAULT;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ChatTemplateInputs to_inputs(const OrderedJson& j) {
  ChatTemplateInputs in;
  in.messages = j.at("messages");
  in.tools = j.at("tools");
  in.add_generation_prompt = j.at("add_generation_prompt").get<bool>();
  in.extra = j.at("extra");
  in.bos_token = j.at("bos_token").get<std::string>();
  in.eos_token = j.at("eos_token").get<std::string>();
  return in;
}

// First differing byte, with some context, so a mismatch is readable.
std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  size_t from = i > 60 ? i - 60 : 0;
  return "first difference at byte " + std::to_string(i) +
         "\n  expected: " + OrderedJson(want.substr(from, 160)).dump() +
         "\n  got:      " + OrderedJson(got.substr(from, 160)).dump();
}

TEST(ChatTemplateReference, MatchesTransformers) {
  std::string dir = ref_dir();
  std::ifstream cases(dir + "/cases.jsonl");
  if (!cases) {
    GTEST_SKIP() << "no reference cases in " << dir
                 << ": run `python3 scripts/chat_template_reference.py --out " << dir
                 << "` (needs scripts/requirements-test.txt) or set BITEXACT_CHAT_REF";
  }
  OrderedJson sources = OrderedJson::parse(read_file(dir + "/templates.json"));
  std::map<std::string, std::unique_ptr<ChatTemplate>> compiled;
  std::map<std::string, std::string> compile_errors;
  std::map<std::string, std::pair<int, int>> per_template;  // passed, total
  std::string line;
  int total = 0, passed = 0, shown = 0;
  while (std::getline(cases, line)) {
    OrderedJson c = OrderedJson::parse(line);
    std::string name = c.at("template");
    if (!compiled.count(name) && !compile_errors.count(name)) {
      try {
        compiled[name] = std::make_unique<ChatTemplate>(sources.at(name).get<std::string>());
      } catch (const Error& e) {
        compile_errors[name] = e.what();
      }
    }
    bool want_error = c.contains("expected_error");
    std::string got, error;
    bool threw = false;
    if (compile_errors.count(name)) {
      threw = true;
      error = compile_errors[name];
    } else {
      try {
        got = compiled[name]->render(to_inputs(c.at("inputs")));
      } catch (const Error& e) {
        threw = true;
        error = e.what();
      }
    }
    bool ok = want_error ? threw : (!threw && got == c.at("expected").get<std::string>());
    ++total;
    passed += ok;
    auto& [p, t] = per_template[name.rfind("snippet_", 0) == 0 ? "snippets" : name];
    p += ok;
    ++t;
    if (!ok && shown++ < 15) {
      std::string detail;
      if (want_error)
        detail = "expected an error (" + c.at("expected_error").get<std::string>() +
                 "), got output " + OrderedJson(got.substr(0, 200)).dump();
      else if (threw)
        detail = "unexpected error: " + error;
      else
        detail = first_difference(c.at("expected").get<std::string>(), got);
      ADD_FAILURE() << "case " << total << " (" << name << "): " << detail;
    }
  }
  for (const auto& [name, pt] : per_template)
    std::cout << "[chatref] " << name << ": " << pt.first << "/" << pt.second
              << " match transformers\n";
  EXPECT_EQ(passed, total);
  EXPECT_GE(total, 250) << "too few reference cases";
}

}  // namespace
}  // namespace bitexact::tok
