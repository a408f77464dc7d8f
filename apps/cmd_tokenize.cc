// `bitexact tokenize`: token ids of text, one JSON array per line, from a model folder,
// a tokenizer.json or a .gguf file. Input is --text or a JSONL file of JSON strings.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "tokenizer/jinja/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::apps {
namespace {

void print_ids(const std::vector<int32_t>& ids) {
  std::string line = nlohmann::json(ids).dump();
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

// Renders a conversation file through the tokenizer's chat template, as transformers'
// apply_chat_template(..., tokenize=False) would.
std::string render_chat_file(const tok::Tokenizer& tok, const std::string& path, bool add_generation_prompt) {
  const tok::TokenizerConfig& cfg = tok.config();
  if (cfg.chat_template.empty()) fail(ErrorKind::kInvalidArgument, "this tokenizer has no chat template");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::kIo, path + ": cannot open file");
  tok::OrderedJson doc = tok::OrderedJson::parse(in, nullptr, false);  // keeps key order, as Python does
  if (doc.is_discarded()) fail(ErrorKind::kFormat, path + ": not valid JSON");
  tok::ChatTemplateInputs inputs;
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.bos_token = cfg.bos_token;
  inputs.eos_token = cfg.eos_token;
  if (doc.is_array()) {
    inputs.messages = doc;
  } else if (doc.is_object() && doc.contains("messages")) {
    inputs.messages = doc["messages"];
    if (doc.contains("tools")) inputs.tools = doc["tools"];
    if (doc.contains("chat_template_kwargs")) inputs.extra = doc["chat_template_kwargs"];
    if (doc.contains("add_generation_prompt")) inputs.add_generation_prompt = doc["add_generation_prompt"].get<bool>();
  } else {
    fail(ErrorKind::kFormat, path + ": expected a list of messages or an object with `messages`");
  }
  return tok::ChatTemplate(cfg.chat_template).render(inputs);
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  CLI::App app{"Print the token ids of text, one JSON array per line.", "bitexact tokenize"};
  std::string model_path, text, input;
  bool add_special = true;
  app.add_option("--model", model_path, "model folder (tokenizer.json), tokenizer.json or .gguf")
      ->required();
  app.add_option("--add-special-tokens", add_special,
                 "add the BOS/EOS the tokenizer's post-processor adds (true|false)")
      ->capture_default_str();
  auto* text_opt = app.add_option("--text", text, "the text to tokenize");
  auto* input_opt =
      app.add_option("--input", input, "JSONL file: one JSON string (or {\"text\": ...}) per line");
  text_opt->excludes(input_opt);
  std::string chat;
  bool no_generation_prompt = false;
  auto* chat_opt = app.add_option("--chat", chat,
                                  "JSON file: a list of messages (or {\"messages\", \"tools\", ...}); "
                                  "prints the text the model's chat template renders");
  app.add_flag("--no-generation-prompt", no_generation_prompt, "with --chat: leave out the assistant prompt");
  chat_opt->excludes(text_opt)->excludes(input_opt);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!*text_opt && !*input_opt && !*chat_opt)
    fail(ErrorKind::kInvalidArgument, "give --text TEXT, --input FILE or --chat FILE");

  auto tok = tok::load_tokenizer(model_path);
  if (*chat_opt) {
    std::cout << render_chat_file(*tok, chat, !no_generation_prompt);
    return 0;
  }
  if (*text_opt) {
    print_ids(tok->encode(text, add_special));
    return 0;
  }
  std::ifstream in(input, std::ios::binary);
  if (!in) fail(ErrorKind::kIo, input + ": cannot open file");
  std::string line;
  for (size_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::kFormat, input + ":" + std::to_string(lineno) + ": not valid JSON: " + e.what());
    }
    if (j.is_object() && j.contains("text")) j = j.at("text");
    if (!j.is_string())
      fail(ErrorKind::kFormat, input + ":" + std::to_string(lineno) +
                                   ": expected a JSON string (or an object with a `text` string)");
    print_ids(tok->encode(j.get_ref<const std::string&>(), add_special));
  }
  return 0;
}

}  // namespace bitexact::apps
