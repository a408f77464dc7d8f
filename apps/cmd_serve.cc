// `bitexact serve`: loads a model and serves the OpenAI-compatible API (src/server) until SIGTERM
// or SIGINT, then shuts down gracefully: new requests are refused, in-flight ones may finish for
// --shutdown-timeout seconds, the rest are aborted, and the process exits 0.
#include <pthread.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "apps/commands.h"
#include "apps/model_session.h"
#include "engine/engine.h"
#include "server/server.h"

namespace bitexact::apps {
namespace {

// --chat-template takes a file or, as in vLLM, the template text itself.
std::string read_chat_template(const std::string& arg) {
  if (std::filesystem::is_regular_file(arg)) {
    std::ifstream in(arg);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  if (arg.find("{%") != std::string::npos || arg.find("{{") != std::string::npos) return arg;
  fail(ErrorKind::kIo, "--chat-template: `" + arg + "` is neither a file nor a template");
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  CLI::App app{"Serve the OpenAI-compatible HTTP API.", "bitexact serve"};
  std::string model_path, device = "cpu", served_name, chat_template;
  server::ServerOptions opt;
  engine::EngineConfig ec;
  bool no_invariant = false, no_prefix_caching = false;
  LoadFlags load;
  ParallelFlags parallel;
  int max_logprobs = 20;
  double body_mb = 8.0, kv_cache_gb = 0.0;
  if (const char* key = std::getenv("BITEXACT_API_KEY")) opt.api_key = key;
  app.add_option("--model", model_path, "Hugging Face model folder or .gguf file")->required();
  app.add_option("--host", opt.host, "address to bind (loopback unless told otherwise)")
      ->capture_default_str();
  app.add_option("--port", opt.port, "port (0: any free port)")->capture_default_str();
  app.add_option("--served-model-name", served_name,
                 "the model name clients send (default: --model)");
  app.add_option("--api-key", opt.api_key,
                 "require `Authorization: Bearer KEY` (env BITEXACT_API_KEY)");
  app.add_option("--chat-template", chat_template,
                 "Jinja chat template file (or text); default: the model's");
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  app.add_option("--max-num-seqs", ec.max_num_seqs, "sequences running at once")
      ->capture_default_str();
  app.add_option("--max-num-batched-tokens", ec.max_num_batched_tokens, "tokens per step")
      ->capture_default_str();
  app.add_option("--max-model-len", ec.max_model_len, "prompt + output tokens (0: the model's)")
      ->capture_default_str();
  app.add_option("--num-kv-blocks", ec.num_kv_blocks, "KV cache blocks (0: from --kv-cache-gb)");
  app.add_option("--kv-cache-gb", kv_cache_gb, "KV cache size in GiB (default: the engine's)");
  app.add_flag("--no-enable-prefix-caching", no_prefix_caching, "turn the prefix cache off");
  load.add_to(app);
  parallel.add_to(app);
  app.add_flag("--no-batch-invariant", no_invariant,
               "fast batch-dependent kernels (for comparison)");
  app.add_option("--max-logprobs", max_logprobs, "the most top logprobs a request may ask for")
      ->capture_default_str();
  app.add_option("--max-body-mb", body_mb, "largest request body accepted (413 past it)")
      ->capture_default_str();
  app.add_option("--max-pending", opt.max_pending, "engine requests in flight before 503")
      ->capture_default_str();
  app.add_option("--max-connections,--http-threads", opt.max_connections,
                 "HTTP connections served at once, one thread each, started on demand (an open "
                 "stream holds one); more wait for a free one")
      ->capture_default_str();
  app.add_option("--shutdown-timeout", opt.shutdown_timeout_s,
                 "seconds in-flight requests get on SIGTERM")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  opt.max_body_bytes = size_t(body_mb * 1024 * 1024);
  if (kv_cache_gb > 0) ec.kv_cache_bytes = size_t(kv_cache_gb * double(size_t(1) << 30));
  ec.enable_prefix_caching = !no_prefix_caching;

  // Signals go to one thread that waits for them; every other thread (created below) blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that vanished must not kill the process

  model::ModelOptions mo;
  mo.device = parse_device(device);
  load.apply(mo);
  parallel.apply(mo);
  mo.batch_invariant = !no_invariant;
  if (ec.max_model_len > 0) mo.max_positions = ec.max_model_len;
  ModelSession s = open_model(model_path, mo);
  ec.eos_ids = s.eos_ids;
  if (ec.max_model_len > s.model->max_positions())
    std::fprintf(
        stderr,
        "bitexact serve: warning: --max-model-len %d is past the model's %d positions; using %d\n",
        ec.max_model_len, s.model->max_positions(), s.model->max_positions());
  if (ec.max_model_len <= 0 || ec.max_model_len > s.model->max_positions())
    ec.max_model_len = s.model->max_positions();

  server::ModelInfo info;
  info.served_name = served_name.empty() ? model_path : served_name;
  info.path = model_path;
  info.tokenizer = s.tokenizer.get();
  info.max_model_len = ec.max_model_len;
  info.vocab_size = s.model->config().vocab_size;
  info.max_logprobs = max_logprobs;
  std::string tmpl = chat_template.empty()
                         ? (s.tokenizer ? s.tokenizer->config().chat_template : "")
                         : read_chat_template(chat_template);
  if (!tmpl.empty()) info.chat_template = std::make_unique<tok::ChatTemplate>(tmpl);

  engine::Engine eng(*s.model, s.tokenizer.get(), ec);
  server::Server srv(info, eng, opt);
  const int port = srv.bind();
  std::fprintf(stderr, "bitexact serve: model `%s` on http://%s:%d (max_model_len %d, %s)\n",
               info.served_name.c_str(), opt.host.c_str(), port, ec.max_model_len,
               opt.api_key.empty() ? "no API key" : "API key required");
  std::fflush(stderr);

  std::atomic<bool> signalled{false};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    signalled = true;
    std::fprintf(stderr, "bitexact serve: %s received, shutting down\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv.shutdown();
  });
  srv.serve();
  // serve() returns after shutdown(), or when listening failed: then wake the signal thread.
  if (!signalled) pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  std::fprintf(stderr, "bitexact serve: stopped\n");
  return 0;
}

}  // namespace bitexact::apps
