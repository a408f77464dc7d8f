// libFuzzer target: parses and renders arbitrary template source against a fixed small
// conversation. Any bitexact::Error is an accepted outcome; crashes, hangs, leaks and stack
// overflows are not.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "tokenizer/jinja/chat_template.h"

namespace {

const bitexact::tok::ChatTemplateInputs& inputs() {
  static const bitexact::tok::ChatTemplateInputs in = [] {
    bitexact::tok::ChatTemplateInputs in;
    in.messages = bitexact::tok::OrderedJson::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Weather in Paris? ünï 🚀"},
      {"role": "assistant", "content": "", "reasoning_content": "think",
       "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "content": "{\"temp\": 22}"},
      {"role": "assistant", "content": "<think>x</think>22 degrees."}])");
    in.tools = bitexact::tok::OrderedJson::parse(
        R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])");
    in.add_generation_prompt = true;
    in.extra = {{"enable_thinking", false}, {"date_string", "26 Jul 2024"}};
    in.bos_token = "<s>";
    in.eos_token = "</s>";
    return in;
  }();
  return in;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  bitexact::tok::ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 200'000;
  limits.max_call_depth = 32;
  try {
    bitexact::tok::ChatTemplate tmpl(std::string(reinterpret_cast<const char*>(data), size),
                                     limits);
    tmpl.render(inputs());
  } catch (const bitexact::Error&) {
  }
  return 0;
}
