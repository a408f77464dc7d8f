// The OpenAI-compatible HTTP server: cpp-httplib's thread pool parses and validates requests and
// posts them to the EngineWorker; responses are JSON or SSE streams. Owns the routes, API-key
// check, body-size limit, error shapes, and the graceful shutdown sequence.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "server/engine_worker.h"
#include "server/metrics.h"
#include "server/protocol.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace bitexact::server {

class ConnectionPool;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;      // 0: any free port (reported by bind())
  std::string api_key;  // empty: no authentication
  size_t max_body_bytes = size_t(8) << 20;
  // Connections served at once (one thread each, started on demand); more wait for a thread.
  // A stream holds its connection for its whole life, so this bounds concurrent streams.
  int max_connections = 1024;
  int max_pending = 1024;            // engine requests in flight before 503
  double shutdown_timeout_s = 10.0;  // on SIGTERM: how long in-flight requests may finish
};

class Server {
 public:
  Server(ModelInfo& model, engine::Engine& engine, const ServerOptions& options);
  ~Server();

  // Binds the listening socket; returns the port. Throws Error(kIo) when it cannot bind.
  int bind();
  // Serves until shutdown(); returns once every handler has returned and the engine thread stopped.
  void serve();
  // Graceful shutdown, safe from any thread: stop accepting, let in-flight requests finish for
  // up to shutdown_timeout_s, then abort the rest.
  void shutdown();

 private:
  void routes();
  void handle_generate(const httplib::Request& req, httplib::Response& res, ApiKind kind);
  void handle_completions(const httplib::Request& req, httplib::Response& res) {
    handle_generate(req, res, ApiKind::kCompletion);
  }
  void handle_chat(const httplib::Request& req, httplib::Response& res) {
    handle_generate(req, res, ApiKind::kChat);
  }
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  void handle_models(const httplib::Request& req, httplib::Response& res);
  // POST /v1/update_weights (handlers_weights.cc)
  void handle_update_weights(const httplib::Request& req, httplib::Response& res);
  bool authorized(const httplib::Request& req) const;

  ModelInfo& model_;
  ServerOptions options_;
  ServerMetrics metrics_;
  EngineWorker worker_;
  std::unique_ptr<httplib::Server> http_;
  // Made by httplib's accept loop (new_task_queue) and owned by it; alive while any handler runs,
  // since handlers run on its threads.
  std::atomic<ConnectionPool*> pool_{nullptr};
  std::atomic<bool> shutting_down_{false};
  int listen_fd_ = -1;  // the listening socket, to deepen its backlog
};

// Parses a request body as a JSON object; 400 otherwise.
nlohmann::json parse_body(const std::string& body);
// Sets `res` to the OpenAI error shape.
void set_error(httplib::Response& res, int status, const std::string& message,
               const std::string& param = "");

}  // namespace bitexact::server
