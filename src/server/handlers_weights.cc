// POST /v1/update_weights {"path": DIR}: the served model takes the weights in DIR (safetensors
// with the model's tensor names, shapes and dtypes) without a restart. Engine::update_weights makes
// it atomic for requests: those in flight finish on the old weights, later ones wait and run on
// the new. The answer comes once the new weights serve: 200 {"status": "ok", "path", "seconds"};
// 400 naming the problem when the checkpoint does not fit (nothing changed then); 503 when the
// server shuts down first.
#include <httplib.h>

#include <chrono>
#include <future>

#include "core/error.h"
#include "server/api_error.h"
#include "server/server.h"

namespace bitexact::server {

using nlohmann::json;

void Server::handle_update_weights(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req.body);
  if (!body.contains("path") || !body["path"].is_string() ||
      body["path"].get<std::string>().empty())
    bad_request("path", "must be the folder (or .safetensors file) holding the new weights");
  const std::string path = body["path"].get<std::string>();
  if (shutting_down_) throw ApiError(503, "The server is shutting down.");
  const auto t0 = std::chrono::steady_clock::now();
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> swapped = done->get_future();
  // Read and checked on the engine thread (it owns the model); the swap waits for the requests
  // in flight, so this may take as long as the longest of them.
  worker_.call([done, path](engine::Engine& e) {
    try {
      e.update_weights(path, [done] { done->set_value(); });
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  // A shutdown aborts the requests in flight, which applies the update; only a call posted after
  // the engine thread stopped never runs: stop waiting for it some time after the shutdown began.
  auto shutdown_seen = std::chrono::steady_clock::time_point::max();
  while (swapped.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (!shutting_down_) continue;
    const auto now = std::chrono::steady_clock::now();
    if (shutdown_seen == std::chrono::steady_clock::time_point::max()) shutdown_seen = now;
    if (now - shutdown_seen > std::chrono::duration<double>(options_.shutdown_timeout_s + 5.0))
      throw ApiError(503, "The server shut down before the weights were updated.");
  }
  try {
    swapped.get();
  } catch (const Error& e) {
    // A checkpoint that does not fit, or cannot be read, is the client's to fix.
    if (e.kind() == ErrorKind::kInternal || e.kind() == ErrorKind::kOutOfResources) throw;
    throw ApiError(400, e.what(), "path");
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.set_content(json{{"status", "ok"}, {"path", path}, {"seconds", secs}}.dump(),
                  "application/json");
}

}  // namespace bitexact::server
