// Routes, authentication, error shapes and lifecycle of the HTTP server. Every handler runs inside
// guard(), which turns ApiError and any other exception into an OpenAI error response, so a bad
// request can neither crash the server nor leak into another request.
#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "server/api_error.h"
#include "server/connection_pool.h"

namespace bitexact::server {

using nlohmann::json;

const char* error_type_for_status(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 405:
      return "invalid_request_error";
    case 413:
      return "request_too_large";
    case 503:
      return "service_unavailable_error";
    default:
      return status >= 500 ? "internal_server_error" : "invalid_request_error";
  }
}

json error_body(int status, const std::string& message, const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", error_type_for_status(status)},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", status}}}};
}

void set_error(httplib::Response& res, int status, const std::string& message,
               const std::string& param) {
  res.status = status;
  res.set_content(error_body(status, message, param).dump(), "application/json");
}

namespace {

// How deeply arrays and objects nest in JSON text (strings skipped). Checked before parsing:
// nlohmann's serialiser and the template renderer recurse on nesting, so a body of a million
// brackets (well under the body limit) would overflow a thread's stack.
int json_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

constexpr int kMaxJsonDepth = 64;

}  // namespace

json parse_body(const std::string& body) {
  if (json_depth(body) > kMaxJsonDepth)
    throw ApiError(400, "The request body nests arrays and objects more than " +
                            std::to_string(kMaxJsonDepth) + " levels deep.");
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "The request body is not valid JSON.");
  if (!j.is_object()) throw ApiError(400, "The request body must be a JSON object.");
  return j;
}

namespace {

// Runs a handler with every exception turned into an error response.
template <typename F>
void guard(httplib::Response& res, F&& f) {
  try {
    f();
  } catch (const ApiError& e) {
    set_error(res, e.status(), e.what(), e.param());
  } catch (const Error& e) {
    set_error(res, e.kind() == ErrorKind::kInvalidArgument ? 400 : 500, e.what());
  } catch (const std::exception& e) {
    set_error(res, 500, std::string("internal error: ") + e.what());
  }
}

}  // namespace

Server::Server(ModelInfo& model, engine::Engine& engine, const ServerOptions& options)
    : model_(model),
      options_(options),
      metrics_(model.served_name),
      worker_(engine, metrics_, options.max_pending),
      http_(std::make_unique<httplib::Server>()) {
  const size_t max_connections = size_t(std::max(1, options_.max_connections));
  http_->new_task_queue = [this, max_connections] {
    auto* pool = new ConnectionPool(max_connections);
    pool_ = pool;
    return pool;
  };
  http_->set_payload_max_length(options_.max_body_bytes);
  // httplib 0.11 listens with a backlog of 5: a burst of clients (a benchmark at request rate inf)
  // overflows it and connections fail. Keep the socket to listen on it again with a deeper queue.
  http_->set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd_ = int(sock);
  });
  http_->set_keep_alive_timeout(5);
  // A streaming response can wait long for its next token (queued behind other requests).
  http_->set_write_timeout(60);
  // A client idle mid-request holds a thread (and delays shutdown) this long at most.
  http_->set_read_timeout(10);
  routes();
}

Server::~Server() { worker_.stop(); }

bool Server::authorized(const httplib::Request& req) const {
  if (options_.api_key.empty()) return true;
  return req.get_header_value("Authorization") == "Bearer " + options_.api_key;
}

void Server::routes() {
  // Responses that httplib makes itself (404 no route, 413 body too large, 400 bad HTTP) get
  // the OpenAI error shape too.
  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 404   ? "Not found: " + req.method + " " + req.path
                      : res.status == 413 ? "The request body is too large."
                                          : std::string("HTTP error ") + std::to_string(res.status);
    set_error(res, res.status, msg);
  });
  http_->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          set_error(res, 500, std::string("internal error: ") + e.what());
        } catch (...) {
          set_error(res, 500, "internal error");
        }
      });
  // The API key guards the API; /health and /metrics stay open for probes and scrapers (as vLLM).
  // Checked in the handler, after httplib read the body: refusing earlier (pre-routing) would leave
  // the body unread on a keep-alive connection, to be parsed as the next request.
  auto api = [this](auto method) {
    return [this, method](const httplib::Request& req, httplib::Response& res) {
      guard(res, [&] {
        if (!authorized(req))
          throw ApiError(401,
                         "Unauthorized: a valid API key is required (Authorization: Bearer KEY).");
        (this->*method)(req, res);
      });
    };
  };
  http_->set_logger([this](const httplib::Request&, const httplib::Response& res) {
    metrics_.count_http(res.status);
  });

  http_->Post("/v1/completions", api(&Server::handle_completions));
  http_->Post("/v1/chat/completions", api(&Server::handle_chat));
  http_->Get("/v1/models", api(&Server::handle_models));
  http_->Post("/v1/update_weights", api(&Server::handle_update_weights));
  http_->Post("/tokenize", api(&Server::handle_tokenize));
  http_->Post("/detokenize", api(&Server::handle_detokenize));
  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (shutting_down_)
      set_error(res, 503, "The server is shutting down.");
    else if (std::optional<std::string> failure = worker_.failure())
      set_error(res, 503, "The engine failed (" + *failure + "); restart the server.");
    else
      res.status = 200;
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    HttpPoolStats http;
    if (const ConnectionPool* pool = pool_.load()) {
      http.active = pool->busy();
      http.queued = pool->queued();
      http.threads = pool->threads();
      http.waited = pool->waited();
    }
    res.set_content(metrics_.render(worker_.stats(), worker_.in_flight(), http),
                    "text/plain; version=0.0.4");
  });
}

void Server::handle_models(const httplib::Request&, httplib::Response& res) {
  json m = {{"id", model_.served_name},
            {"object", "model"},
            {"created", 0},
            {"owned_by", "bitexact"},
            {"root", model_.path},
            {"parent", nullptr},
            {"max_model_len", model_.max_model_len},
            {"vocab_size",
             model_.vocab_size}};  // vocab_size: an extension (bench serve draws ids below it)
  res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
}

// vLLM's /tokenize: {prompt, add_special_tokens} or {messages, add_generation_prompt, ...}.
void Server::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req.body);
  check_model_name(body, model_);
  if (!model_.tokenizer) throw ApiError(400, "This model has no tokenizer.");
  std::vector<int32_t> ids;
  try {
    if (body.contains("messages")) {
      const json add = body.value("add_special_tokens", json(false));
      if (!add.is_boolean()) bad_request("add_special_tokens", "must be true or false");
      const bool add_special = add.get<bool>();
      ids = model_.tokenizer->encode(render_chat(body, model_), add_special);
    } else {
      if (!body.contains("prompt") || !body["prompt"].is_string())
        bad_request("prompt", "must be a string");
      const json& add =
          body.contains("add_special_tokens") ? body["add_special_tokens"] : json(true);
      if (!add.is_boolean()) bad_request("add_special_tokens", "must be true or false");
      ids = model_.tokenizer->encode(body["prompt"].get<std::string>(), add.get<bool>());
    }
  } catch (const Error& e) {
    bad_request("prompt", e.what());
  }
  json out = {{"count", ids.size()}, {"max_model_len", model_.max_model_len}, {"tokens", ids}};
  const json strs_wanted = body.value("return_token_strs", json(false));
  if (!strs_wanted.is_boolean()) bad_request("return_token_strs", "must be true or false");
  if (strs_wanted.get<bool>()) {
    json strs = json::array();
    for (int32_t id : ids) strs.push_back(model_.tokenizer->id_to_token(id));
    out["token_strs"] = strs;
  }
  res.set_content(out.dump(), "application/json");
}

void Server::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req.body);
  check_model_name(body, model_);
  if (!model_.tokenizer) throw ApiError(400, "This model has no tokenizer.");
  if (!body.contains("tokens") || !body["tokens"].is_array())
    bad_request("tokens", "must be a list of token ids");
  const std::vector<int32_t> ids = parse_token_ids(body["tokens"], model_, "tokens");
  const std::string text = model_.tokenizer->decode(ids, /*skip_special_tokens=*/false);
  res.set_content(json{{"prompt", text}}.dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

int Server::bind() {
  const int port = options_.port == 0
                       ? http_->bind_to_any_port(options_.host)
                       : (http_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
  if (port < 0)
    fail(ErrorKind::kIo, "cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                             " (in use, or not a local address)");
  if (listen_fd_ >= 0)
    ::listen(listen_fd_, 4096);  // Linux takes a new backlog on a listening socket
  return port;
}

void Server::serve() {
  http_->listen_after_bind();  // returns after stop(), once every handler has returned
  worker_.stop();
}

void Server::shutdown() {
  if (shutting_down_.exchange(true)) return;
  // New generation requests get 503 from here on; those in flight may finish. The listening
  // socket closes only afterwards, since httplib cuts open streams when it stops.
  worker_.start_draining();
  const auto timeout = std::chrono::milliseconds(int64_t(options_.shutdown_timeout_s * 1000));
  if (!worker_.wait_idle(timeout))
    std::fprintf(stderr, "bitexact serve: %d requests still running after %.0f s; aborting them\n",
                 worker_.in_flight(), options_.shutdown_timeout_s);
  worker_.stop();  // aborts what is left; their handlers answer at once
  http_->stop();
}

}  // namespace bitexact::server
