// `bitexact tokenize`: token ids of text, one JSON array per line, from a model folder,
// a tokenizer.json or a .gguf file. Input is --text or a JSONL file of JSON strings.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::apps {
namespace {

void print_ids(const std::vector<int32_t>& ids) {
  std::string line = nlohmann::json(ids).dump();
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
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
  // Hook for chat prompts: `--chat FILE` (JSONL of message lists rendered through the model's chat
  // template, then encoded without adding special tokens again) belongs here once the Jinja
  // engine's render API exists; it is not implemented yet.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!*text_opt && !*input_opt) fail(ErrorKind::kInvalidArgument, "give --text TEXT or --input FILE");

  auto tok = tok::load_tokenizer(model_path);
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
