// /v1/completions and /v1/chat/completions: parse, submit to the engine thread, then either wait
// for the whole result or stream SSE chunks as the engine delivers them. A client that
// disconnects, streaming or not, aborts its engine requests, which frees their KV blocks at once.
#include <httplib.h>

#include <chrono>
#include <optional>
#include <unordered_map>

#include "server/api_error.h"
#include "server/client_socket.h"
#include "server/responses.h"
#include "server/server.h"

namespace bitexact::server {

using nlohmann::json;

namespace {

// Output text is UTF-8 by construction; replace rather than throw should a byte ever slip through.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

// What a streaming response needs after the handler returned: httplib calls the content provider
// on the same thread, repeatedly, until it signals done or the client goes away.
struct StreamState {
  GenerationJob job;
  std::unique_ptr<ResponseBuilder> builder;
  std::shared_ptr<RequestChannel> channel;
  std::unordered_map<std::string, int> prompt_of;  // engine request id -> prompt index
  std::vector<std::string> ids;
  std::optional<ClientSocket> client;
  bool done = false;
};

// How often a request that is still generating checks that its client is still there.
constexpr auto kClientCheckInterval = std::chrono::milliseconds(200);

}  // namespace

void Server::handle_generate(const httplib::Request& req, httplib::Response& res, ApiKind kind) {
  const json body = parse_body(req.body);
  auto st = std::make_shared<StreamState>();
  st->job = kind == ApiKind::kChat ? parse_chat_request(body, model_)
                                   : parse_completion_request(body, model_);
  const GenerationJob& job = st->job;

  std::vector<engine::RequestSpec> specs;
  const std::string id = worker_.next_id(kind == ApiKind::kChat ? "chatcmpl" : "cmpl");
  for (size_t p = 0; p < job.prompts.size(); ++p) {
    engine::RequestSpec spec;
    spec.id = id + "-" + std::to_string(p);
    spec.prompt = job.prompts[p];
    spec.params = job.params;
    spec.n = job.n;
    spec.stop = job.stop;
    spec.skip_special_tokens = job.skip_special_tokens;
    // echo with logprobs returns the prompt's logprobs (with the same top N) before the output's.
    spec.prompt_logprobs = job.echo && job.logprobs >= 0 ? job.logprobs : -1;
    st->prompt_of[spec.id] = int(p);
    st->ids.push_back(spec.id);
    specs.push_back(std::move(spec));
  }
  st->builder = std::make_unique<ResponseBuilder>(st->job, model_, id);
  st->channel = worker_.submit(std::move(specs));
  // Refusals (the engine's own checks, KV capacity) still get a proper status, even when streaming.
  if (st->channel->wait_admitted() == RequestChannel::State::kFailed)
    throw ApiError(st->channel->error_status(), st->channel->error_message());

  st->client.emplace(req);
  if (!job.stream) {
    std::vector<engine::RequestOutput> outs;
    auto next_check = std::chrono::steady_clock::now() + kClientCheckInterval;
    while (!st->channel->finished()) {
      outs.clear();
      st->channel->pop(outs, kClientCheckInterval);
      for (const auto& o : outs) st->builder->add(o, st->prompt_of.at(o.id));
      // Checked on a clock, not only when idle: a fast generation never leaves pop() idle.
      if (std::chrono::steady_clock::now() >= next_check && !st->channel->finished()) {
        next_check = std::chrono::steady_clock::now() + kClientCheckInterval;
        if (st->client->closed()) {
          worker_.abort(st->ids);  // nobody will read the result: free the KV blocks now
          throw ApiError(499, "The client closed the connection before the response was ready.");
        }
      }
    }
    if (st->channel->failed())
      throw ApiError(st->channel->error_status(), st->channel->error_message());
    res.set_content(dump(st->builder->final_body()), "application/json");
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  EngineWorker* worker = &worker_;
  res.set_chunked_content_provider(
      "text/event-stream",
      [st](size_t, httplib::DataSink& sink) {
        std::string payload;
        try {
          std::vector<engine::RequestOutput> outs;
          // Idle (queued, or a slow step): nothing to write would reveal a closed connection.
          if (!st->channel->pop(outs, std::chrono::milliseconds(1000)) && st->client->closed())
            return false;  // the releaser aborts the engine requests
          for (const auto& o : outs)
            for (const json& c : st->builder->add(o, st->prompt_of.at(o.id))) payload += sse(c);
          if (st->channel->finished()) {
            if (st->channel->failed()) {
              // Mid-stream failure (engine error, shutdown): the status is sent already, so the
              // error goes in the stream, as vLLM does.
              payload += sse(error_body(st->channel->error_status(), st->channel->error_message()));
            } else if (st->job.include_usage) {
              payload += sse(st->builder->usage_chunk());
            }
            payload += "data: [DONE]\n\n";
            st->done = true;
          }
        } catch (const std::exception& e) {
          // Never let an exception escape into httplib's writer: end this stream with an error.
          payload +=
              sse(error_body(500, std::string("internal error: ") + e.what())) + "data: [DONE]\n\n";
          st->done = false;  // the releaser aborts the engine requests
          sink.write(payload.data(), payload.size());
          return false;
        }
        // A failed write means the client is gone; returning false ends the response.
        if (!payload.empty() && !sink.write(payload.data(), payload.size())) {
          st->done = false;
          return false;
        }
        if (st->done) sink.done();
        return true;
      },
      [st, worker](bool) {
        // Runs when the response ends for any reason; a stream that did not reach [DONE] lost its
        // client, so its requests are aborted and their KV blocks freed.
        if (!st->done) worker->abort(st->ids);
      });
}

}  // namespace bitexact::server
