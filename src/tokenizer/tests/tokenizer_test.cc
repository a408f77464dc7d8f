// Unit tests of the tokenizer layer on the real files in ../shared: known ids, errors for invalid
// UTF-8 and malformed tokenizer.json, unsupported components named, streaming detokenization of
// split UTF-8, and concurrent encodes agreeing with a single-threaded run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::tok {
namespace {

const std::string kShared = BITEXACT_SHARED_DIR;

std::string temp_file(const std::string& name, const std::string& content) {
  auto p = std::filesystem::temp_directory_path() / ("bitexact_tok_" + name);
  std::ofstream(p) << content;
  return p.string();
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::kInternal;  // "no error" for these tests
}

TEST(Tokenizer, Llama3KnownIds) {
  auto t = load_tokenizer(kShared + "/tokenizers/llama3");
  EXPECT_EQ(t->encode("Hello world", false), (std::vector<int32_t>{9906, 1917}));
  EXPECT_EQ(t->decode(std::vector<int32_t>{9906, 1917}, false), "Hello world");
  EXPECT_EQ(t->config().bos_token, "<|begin_of_text|>");
  EXPECT_TRUE(t->bos_id().has_value());
  EXPECT_FALSE(t->config().chat_template.empty());
}

TEST(Tokenizer, Qwen3SpecialTokens) {
  auto t = load_tokenizer(kShared + "/tokenizers/qwen3");
  auto ids = t->encode("hi<|im_start|>user<think>x</think>", true);
  EXPECT_EQ(ids, (std::vector<int32_t>{6023, 151644, 872, 151667, 87, 151668}));
  EXPECT_TRUE(t->is_special(151644));
  EXPECT_FALSE(t->is_special(151667));  // <think> is an added, non-special token
  EXPECT_EQ(t->decode(std::vector<int32_t>{151644, 15, 151667}, true), "0<think>");
  EXPECT_EQ(t->token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(t->id_to_token(151644), "<|im_start|>");
  EXPECT_EQ(t->eos_id(), 151645);
  EXPECT_EQ(t->vocab_size(), 151669);
}

TEST(Tokenizer, Llama2Legacy) {
  auto t = load_tokenizer(kShared + "/tokenizers/llama2/tokenizer.json");
  auto ids = t->encode("Hello <s> world</s>x", true);
  std::vector<std::string> toks;
  for (int32_t id : ids) toks.push_back(t->id_to_token(id));
  EXPECT_EQ(toks, (std::vector<std::string>{"<s>", "\xE2\x96\x81Hello", "\xE2\x96\x81", "<s>",
                                            "\xE2\x96\x81", "\xE2\x96\x81world", "</s>",
                                            "\xE2\x96\x81x"}));
  EXPECT_TRUE(t->config().add_bos_token);
}

TEST(Tokenizer, StoriesGguf) {
  auto t = load_tokenizer(kShared + "/models/stories260K.gguf");
  EXPECT_EQ(t->vocab_size(), 512);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  auto ids = t->encode("Once upon a time", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(t->decode(ids, true), "Once upon a time");
}

TEST(Tokenizer, InvalidUtf8IsInvalidArgument) {
  auto t = load_tokenizer(kShared + "/tokenizers/llama3");
  EXPECT_EQ(kind_of([&] { t->encode("ok \xC3\x28", false); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind_of([&] { t->encode("\xED\xA0\x80", false); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind_of([&] { t->encode("\xF0\x9F\x98", false); }), ErrorKind::kInvalidArgument);
}

TEST(Tokenizer, MalformedFiles) {
  EXPECT_EQ(kind_of([] { load_tokenizer("/nonexistent/tokenizer.json"); }), ErrorKind::kIo);
  EXPECT_EQ(kind_of([] { load_tokenizer(temp_file("bad.json", "{\"model\": ")); }),
            ErrorKind::kFormat);
  EXPECT_EQ(kind_of([] { load_tokenizer(temp_file("nomodel.json", "{}")); }), ErrorKind::kFormat);
  EXPECT_EQ(kind_of([] {
              load_tokenizer(temp_file("badmerge.json",
                                       R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}})"));
            }),
            ErrorKind::kFormat);
  try {
    load_tokenizer(temp_file("unigram.json", R"({"model":{"type":"Unigram","vocab":[]}})"));
    FAIL() << "Unigram accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos);
  }
  try {
    load_tokenizer(temp_file("bert.json", R"({"normalizer":{"type":"BertNormalizer"},
      "model":{"type":"BPE","vocab":{"a":0},"merges":[]}})"));
    FAIL() << "BertNormalizer accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("BertNormalizer"), std::string::npos);
  }
}

TEST(Tokenizer, MergesAsPairs) {
  auto t = load_tokenizer(temp_file("pairs.json", R"({"model":{"type":"BPE",
    "vocab":{"a":0,"b":1,"ab":2,"c":3,"abc":4},"merges":[["a","b"],["ab","c"]]}})"));
  EXPECT_EQ(t->encode("abcab", false), (std::vector<int32_t>{4, 2}));
}

TEST(Tokenizer, IncrementalNeverSplitsUtf8) {
  auto t = load_tokenizer(kShared + "/tokenizers/llama3");
  const std::string text = "héllo 世界 👨‍👩‍👧 done";
  auto ids = t->encode(text, false);
  IncrementalDetokenizer d(*t, false);
  std::string all;
  for (int32_t id : ids) {
    std::string piece = d.push(id);
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "partial UTF-8 emitted";
    all += piece;
  }
  all += d.flush();
  EXPECT_EQ(all, text);
}

TEST(Tokenizer, ConcurrentEncodeMatchesSerial) {
  auto t = load_tokenizer(kShared + "/tokenizers/qwen3");
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("item " + std::to_string(i * 7919) + " 猫 émoji 😀");
  std::vector<std::vector<int32_t>> serial;
  for (const auto& s : texts) serial.push_back(t->encode(s, true));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (size_t i = 0; i < texts.size(); ++i)
        if (t->encode(texts[i], true) != serial[i]) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace bitexact::tok
