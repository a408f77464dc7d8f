// Compares bitexact's tokenizers with the reference ids and texts that scripts/tokenizer_corpus.py
// wrote (Hugging Face `tokenizers`; sentencepiece for the GGUF vocabulary): encode with and
// without special tokens, decode (skipping specials or not), random-id decodes, and the
// incremental detokenizer against the full decode. Every mismatch counts; 100% equal is required.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace bitexact::tok {
namespace {

std::filesystem::path reference_dir() {
  if (const char* env = std::getenv("BITEXACT_TOKREF")) return env;
  return std::filesystem::path(BITEXACT_SOURCE_DIR) / "build" / "tokref";
}

std::string streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer d(tok, skip);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  return out + d.flush();
}

std::string show(const std::string& s) { return nlohmann::json(s).dump(); }

void check_tokenizer(const std::string& name) {
  const auto dir = reference_dir();
  const auto manifest_path = dir / "manifest.json";
  if (!std::filesystem::exists(manifest_path))
    GTEST_SKIP() << "no reference corpus at " << dir
                 << "; run scripts/tokenizer_corpus.py --out build/tokref (or set BITEXACT_TOKREF)";
  std::ifstream mf(manifest_path);
  nlohmann::json manifest = nlohmann::json::parse(mf);
  ASSERT_TRUE(manifest.contains(name));
  auto tok = load_tokenizer(manifest[name]["path"].get<std::string>());
  EXPECT_EQ(tok->vocab_size(), manifest[name]["vocab_size"].get<int64_t>());

  std::ifstream f(dir / (name + ".jsonl"));
  ASSERT_TRUE(f) << "missing " << name << ".jsonl";
  size_t strings = 0, id_cases = 0, lossless = 0, failures = 0;
  auto report = [&](const std::string& what, const std::string& text) {
    if (++failures <= 10) ADD_FAILURE() << name << ": " << what << " differs for " << show(text);
  };
  std::string line;
  while (std::getline(f, line)) {
    nlohmann::json row = nlohmann::json::parse(line);
    if (row.contains("text")) {
      ++strings;
      const std::string text = row["text"];
      auto with = tok->encode(text, true);
      auto without = tok->encode(text, false);
      if (with != row["ids_with_special"].get<std::vector<int32_t>>()) report("encode(special)", text);
      if (without != row["ids_without"].get<std::vector<int32_t>>()) report("encode(plain)", text);
      const std::string decoded = tok->decode(without, false);
      if (decoded != row["decoded"].get<std::string>()) report("decode", text);
      if (tok->decode(with, true) != row["decoded_skip"].get<std::string>()) report("decode(skip)", text);
      if (decoded == text) ++lossless;
      if (streamed(*tok, without, false) != decoded) report("incremental decode", text);
      if (streamed(*tok, with, true) != row["decoded_skip"].get<std::string>())
        report("incremental decode(skip)", text);
    } else {
      ++id_cases;
      auto ids = row["ids"].get<std::vector<int32_t>>();
      const std::string text = nlohmann::json(ids).dump();
      if (tok->decode(ids, false) != row["decoded"].get<std::string>()) report("id decode", text);
      if (tok->decode(ids, true) != row["decoded_skip"].get<std::string>()) report("id decode(skip)", text);
      if (streamed(*tok, ids, false) != row["decoded"].get<std::string>()) report("id incremental", text);
      if (streamed(*tok, ids, true) != row["decoded_skip"].get<std::string>())
        report("id incremental(skip)", text);
    }
  }
  std::cout << name << ": " << strings << " strings, " << id_cases << " random-id decodes, "
            << lossless << " round-trip losslessly, " << failures << " mismatches\n";
  EXPECT_GE(strings, 20000u);
  EXPECT_EQ(failures, 0u);
}

TEST(TokenizerHf, Qwen3) { check_tokenizer("qwen3"); }
TEST(TokenizerHf, Llama3) { check_tokenizer("llama3"); }
TEST(TokenizerHf, Llama2) { check_tokenizer("llama2"); }
TEST(TokenizerHf, Stories260KGguf) { check_tokenizer("stories260K"); }

}  // namespace
}  // namespace bitexact::tok
