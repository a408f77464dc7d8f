// Tool-call parsing and its response assembly: the `<tool_call>` parser on whole texts and on
// every way of splitting them into stream deltas, then ResponseBuilder fed fake engine outputs
// (a tiny model cannot write tool calls) for the non-streaming body and the SSE chunks; and the
// request side: `tools` validation and when parsing is turned on.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "server/api_error.h"
#include "server/protocol.h"
#include "server/responses.h"

using namespace bitexact;
using namespace bitexact::server;
using nlohmann::json;

namespace {

const std::string kCall =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
    "\"C\"}}\n</tool_call>";
const std::string kCall2 =
    "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}\n</tool_call>";

TEST(ToolCallParser, OneCallAlone) {
  ToolCallDelta d = parse_tool_calls(kCall);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].name, "get_weather");
  // Key order as written (not sorted), so "unit" stays after "city".
  EXPECT_EQ(d.calls[0].arguments, R"({"city":"Paris","unit":"C"})");
  EXPECT_EQ(d.content, "");
}

TEST(ToolCallParser, TextThenTwoCalls) {
  ToolCallDelta d = parse_tool_calls("Let me check.\n\n" + kCall + "\n" + kCall2 + "\n");
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[1].name, "get_time");
  EXPECT_EQ(d.calls[1].arguments, R"({"tz":"CET"})");
  // Text beside the calls is kept whole; whitespace-only text between and after them is not.
  EXPECT_EQ(d.content, "Let me check.\n\n");
  EXPECT_EQ(parse_tool_calls(kCall + " and more").content, " and more");
}

TEST(ToolCallParser, ArgumentForms) {
  auto one = [](const std::string& body) {
    ToolCallDelta d = parse_tool_calls("<tool_call>" + body + "</tool_call>");
    EXPECT_EQ(d.calls.size(), 1u) << body;
    return d.calls.empty() ? std::string("?") : d.calls[0].arguments;
  };
  EXPECT_EQ(one(R"({"name": "f", "arguments": "{\"a\": 1}"})"), R"({"a": 1})");  // a string: as is
  EXPECT_EQ(one(R"({"name": "f"})"), "{}");
  EXPECT_EQ(one(R"({"name": "f", "arguments": null})"), "{}");
  EXPECT_EQ(one(R"({"name": "f", "parameters": {"x": [1, 2]}})"), R"({"x":[1,2]})");
  EXPECT_EQ(one(R"( {"name": "f", "arguments": {"s": "ünï \"q\""}} )"), R"({"s":"ünï \"q\""})");
}

TEST(ToolCallParser, BlocksThatAreNotCallsStayContent) {
  for (const std::string text :
       {"<tool_call>{not json}</tool_call>", "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": 3}</tool_call>", "<tool_call>{\"name\": \"\"}</tool_call>",
        "<tool_call>[1]</tool_call>", " <tool_call>\n{\"name\": \"f\"", "a <tool", "a <tools> b",
        "</tool_call> x", "plain text, no calls", "  \n ", ""}) {
    ToolCallDelta d = parse_tool_calls(text);
    EXPECT_TRUE(d.calls.empty()) << text;
    EXPECT_EQ(d.content, text);  // without calls, the text is unchanged
  }
  // A bad block beside a good one: the bad one is content, with the whitespace before it.
  ToolCallDelta d = parse_tool_calls(kCall + "\n<tool_call>oops</tool_call>");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.content, "\n<tool_call>oops</tool_call>");
}

// Streaming must give what the whole-text parse gives, however the text is split, and must not
// emit content that later turns out to be part of a call.
TEST(ToolCallParser, EverySplitStreamsLikeTheWhole) {
  const std::vector<std::string> texts = {
      kCall,
      "Let me check.\n\n" + kCall + "\n" + kCall2 + "\n",
      "  " + kCall + "  tail",
      "x <tool_call>{bad}</tool_call> " + kCall,
      "<tool_<tool_call>{\"name\": \"f\"}</tool_call>",
      "no calls at all <tool> </tool_call>\n",
      "\n\n" + kCall2 + "\n<tool_call>{\"name\": \"unclosed\"",
  };
  std::mt19937 rng(7);
  for (const std::string& text : texts) {
    const ToolCallDelta whole = parse_tool_calls(text);
    for (int trial = 0; trial < 200; ++trial) {
      ToolCallParser p;
      ToolCallDelta got;
      size_t pos = 0;
      while (pos < text.size()) {
        const size_t len = trial < 8 ? size_t(trial + 1) : 1 + rng() % 12;
        ToolCallDelta d = p.push(text.substr(pos, len));
        pos += len;
        got.content += d.content;
        for (auto& c : d.calls) got.calls.push_back(c);
        // What was emitted so far is a prefix of the final content: nothing is taken back.
        ASSERT_EQ(whole.content.compare(0, got.content.size(), got.content), 0) << text;
      }
      ToolCallDelta end = p.finish();
      got.content += end.content;
      for (auto& c : end.calls) got.calls.push_back(c);
      ASSERT_EQ(got.content, whole.content) << text;
      ASSERT_EQ(got.calls.size(), whole.calls.size()) << text;
      for (size_t i = 0; i < got.calls.size(); ++i) {
        EXPECT_EQ(got.calls[i].name, whole.calls[i].name);
        EXPECT_EQ(got.calls[i].arguments, whole.calls[i].arguments);
      }
    }
  }
}

// ---- response assembly with fake engine outputs -------------------------------------------------

GenerationJob chat_job(bool stream, bool tools) {
  GenerationJob job;
  job.kind = ApiKind::kChat;
  job.prompts = {{1, 2, 3}};
  job.prompt_texts = {""};
  job.stream = stream;
  job.parse_tool_calls = tools;
  return job;
}

// The output text in three engine steps, the last one finishing with EOS ("stop").
std::vector<engine::RequestOutput> fake_outputs(const std::vector<std::string>& pieces) {
  std::vector<engine::RequestOutput> outs;
  for (size_t i = 0; i < pieces.size(); ++i) {
    engine::RequestOutput o;
    o.id = "r-0";
    o.num_prompt_tokens = 3;
    engine::SampleDelta d;
    d.token_ids = {int32_t(10 + i)};
    d.text = pieces[i];
    d.seed = 42;
    d.finished = i + 1 == pieces.size();
    if (d.finished) d.finish_reason = "stop";
    o.samples.push_back(d);
    o.finished = d.finished;
    outs.push_back(o);
  }
  return outs;
}

const std::vector<std::string> kPieces = {"Checking.\n<tool_",
                                          "call>\n{\"name\": \"get_weather\", ",
                                          "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"};

TEST(ToolCallResponse, NonStreamingBody) {
  ModelInfo model;
  model.served_name = "m";
  GenerationJob job = chat_job(false, true);
  ResponseBuilder b(job, model, "chatcmpl-1");
  for (const auto& o : fake_outputs(kPieces)) EXPECT_TRUE(b.add(o, 0).empty());
  const json body = b.final_body();
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Checking.\n");
  const json& calls = choice["message"]["tool_calls"];
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["id"], "call_chatcmpl-1_0_0");
  EXPECT_EQ(calls[0]["type"], "function");
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[0]["function"]["arguments"], R"({"city":"Paris"})");
  EXPECT_FALSE(calls[0].contains("index"));  // only stream deltas carry an index

  // Calls alone: content is null.
  GenerationJob job2 = chat_job(false, true);
  ResponseBuilder b2(job2, model, "chatcmpl-2");
  for (const auto& o : fake_outputs({kCall, "\n"})) b2.add(o, 0);
  EXPECT_TRUE(b2.final_body()["choices"][0]["message"]["content"].is_null());

  // The same output without `tools` in the request: plain content, finish reason unchanged.
  GenerationJob plain = chat_job(false, false);
  ResponseBuilder b3(plain, model, "chatcmpl-3");
  for (const auto& o : fake_outputs(kPieces)) b3.add(o, 0);
  const json c3 = b3.final_body()["choices"][0];
  EXPECT_EQ(c3["finish_reason"], "stop");
  EXPECT_EQ(c3["message"]["content"], kPieces[0] + kPieces[1] + kPieces[2]);
  EXPECT_TRUE(c3["message"]["tool_calls"].empty());
}

TEST(ToolCallResponse, StreamingChunks) {
  ModelInfo model;
  model.served_name = "m";
  GenerationJob job = chat_job(true, true);
  ResponseBuilder b(job, model, "chatcmpl-9");
  std::vector<json> chunks;
  for (const auto& o : fake_outputs(kPieces))
    for (json& c : b.add(o, 0)) chunks.push_back(std::move(c));
  ASSERT_GE(chunks.size(), 3u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  std::vector<json> call_deltas;
  json finish;
  for (const json& c : chunks) {
    const json& ch = c["choices"][0];
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
    if (ch["delta"].contains("tool_calls"))
      for (const json& t : ch["delta"]["tool_calls"]) call_deltas.push_back(t);
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  // Nothing of the block leaked into content, and the call came whole, once.
  EXPECT_EQ(content, "Checking.\n");
  ASSERT_EQ(call_deltas.size(), 1u);
  EXPECT_EQ(call_deltas[0]["index"], 0);
  EXPECT_EQ(call_deltas[0]["id"], "call_chatcmpl-9_0_0");
  EXPECT_EQ(call_deltas[0]["type"], "function");
  EXPECT_EQ(call_deltas[0]["function"]["name"], "get_weather");
  EXPECT_EQ(call_deltas[0]["function"]["arguments"], R"({"city":"Paris"})");
  EXPECT_EQ(finish, "tool_calls");
}

// ---- request side -------------------------------------------------------------------------------

struct ChatModel {
  std::unique_ptr<tok::Tokenizer> tok =
      tok::load_tokenizer(std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf");
  ModelInfo info;
  ChatModel() {
    std::ifstream in(std::string(BITEXACT_SOURCE_DIR) + "/tests/server/chat_template.jinja");
    std::stringstream ss;
    ss << in.rdbuf();
    info.served_name = "m";
    info.tokenizer = tok.get();
    info.chat_template = std::make_unique<tok::ChatTemplate>(ss.str());
    info.max_model_len = 256;
    info.vocab_size = tok->vocab_size();
  }
};

TEST(ToolCallRequest, ParsingFollowsToolsAndToolChoice) {
  ChatModel m;
  const json tools = json::parse(
      R"([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])");
  json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 4}};
  EXPECT_FALSE(parse_chat_request(body, m.info).parse_tool_calls);
  body["tools"] = tools;
  EXPECT_TRUE(parse_chat_request(body, m.info).parse_tool_calls);
  body["tool_choice"] = "auto";
  EXPECT_TRUE(parse_chat_request(body, m.info).parse_tool_calls);
  body["tool_choice"] = "none";
  EXPECT_FALSE(parse_chat_request(body, m.info).parse_tool_calls);
  body.erase("tool_choice");
  body["tools"] = json::array();
  EXPECT_FALSE(parse_chat_request(body, m.info).parse_tool_calls);
  for (const char* bad : {R"([1])", R"([{"type": "function"}])", R"([{"function": {"name": "f"}}])",
                          R"([{"type": "code", "function": {"name": "f"}}])",
                          R"([{"type": "function", "function": {"name": 5}}])"}) {
    body["tools"] = json::parse(bad);
    try {
      parse_chat_request(body, m.info);
      ADD_FAILURE() << "accepted tools " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), "tools");
    }
  }
}

}  // namespace
