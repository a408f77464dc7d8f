// The `bitexact._core` extension: pybind11 bindings over Runner. The Python package (bitexact/)
// builds vLLM's objects on top. The GIL is released while the engine runs; the tick callback
// takes it back briefly to update the progress bar and to let Ctrl-C abort the batch.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/error.h"
#include "python/src/runner.h"
#include "server/api_error.h"

namespace py = pybind11;
using namespace bitexact;
using namespace bitexact::python;

PYBIND11_MODULE(_core, m) {
  m.doc() = "bitexact engine bindings (use the `bitexact` package, not this module)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      switch (e.kind()) {
        case ErrorKind::kInvalidArgument:
        case ErrorKind::kFormat:
        case ErrorKind::kUnsupported:
          PyErr_SetString(PyExc_ValueError, e.what());
          return;
        case ErrorKind::kIo:
          PyErr_SetString(PyExc_OSError, e.what());
          return;
        case ErrorKind::kOutOfResources:
          PyErr_SetString(PyExc_MemoryError, e.what());
          return;
        default:
          PyErr_SetString(PyExc_RuntimeError, e.what());
          return;
      }
    } catch (const server::ApiError& e) {  // render_chat's bad input
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<Request>(m, "Request")
      .def(py::init(
               [](std::vector<int32_t> prompt, int max_tokens, int min_tokens, double temperature,
                  double top_p, int top_k, double min_p, std::optional<uint64_t> seed, int logprobs,
                  bool ignore_eos, std::vector<int32_t> stop_token_ids, double presence_penalty,
                  double frequency_penalty, double repetition_penalty, int n,
                  std::vector<std::string> stop, int prompt_logprobs, bool skip_special_tokens) {
                 Request r;
                 r.prompt = std::move(prompt);
                 engine::SamplingParams& p = r.params;
                 p.max_tokens = max_tokens;
                 p.min_tokens = min_tokens;
                 p.temperature = temperature;
                 p.top_p = top_p;
                 p.top_k = top_k;
                 p.min_p = min_p;
                 p.seed = seed;
                 p.logprobs = logprobs;
                 p.ignore_eos = ignore_eos;
                 p.stop_token_ids = std::move(stop_token_ids);
                 p.presence_penalty = presence_penalty;
                 p.frequency_penalty = frequency_penalty;
                 p.repetition_penalty = repetition_penalty;
                 r.n = n;
                 r.stop = std::move(stop);
                 r.prompt_logprobs = prompt_logprobs;
                 r.skip_special_tokens = skip_special_tokens;
                 return r;
               }),
           py::kw_only(), py::arg("prompt"), py::arg("max_tokens"), py::arg("min_tokens"),
           py::arg("temperature"), py::arg("top_p"), py::arg("top_k"), py::arg("min_p"),
           py::arg("seed"), py::arg("logprobs"), py::arg("ignore_eos"), py::arg("stop_token_ids"),
           py::arg("presence_penalty"), py::arg("frequency_penalty"), py::arg("repetition_penalty"),
           py::arg("n"), py::arg("stop"), py::arg("prompt_logprobs"),
           py::arg("skip_special_tokens"));

  py::class_<TokenLogprobs>(m, "TokenLogprobs")
      .def_readonly("chosen", &TokenLogprobs::chosen)
      .def_readonly("top", &TokenLogprobs::top);
  py::class_<SampleResult>(m, "SampleResult")
      .def_readonly("index", &SampleResult::index)
      .def_readonly("token_ids", &SampleResult::token_ids)
      .def_readonly("text", &SampleResult::text)
      .def_readonly("logprobs", &SampleResult::logprobs)
      .def_readonly("finish_reason", &SampleResult::finish_reason)
      .def_readonly("stop_reason", &SampleResult::stop_reason)
      .def_readonly("seed", &SampleResult::seed);
  py::class_<RequestResult>(m, "RequestResult")
      .def_readonly("samples", &RequestResult::samples)
      .def_readonly("prompt_logprobs", &RequestResult::prompt_logprobs);

  py::class_<Runner>(m, "Runner")
      .def(py::init([](const std::string& model, const std::string& device, bool batch_invariant,
                       int max_model_len, bool enforce_eager, const std::string& load_format,
                       int max_num_seqs, int max_num_batched_tokens, size_t kv_cache_bytes,
                       bool enable_prefix_caching) {
             RunnerOptions o{model,           device,
                             batch_invariant, max_model_len,
                             enforce_eager,   load_format,
                             max_num_seqs,    max_num_batched_tokens,
                             kv_cache_bytes,  enable_prefix_caching};
             return std::make_unique<Runner>(o);
           }),
           py::kw_only(), py::arg("model"), py::arg("device"), py::arg("batch_invariant"),
           py::arg("max_model_len"), py::arg("enforce_eager"), py::arg("load_format"),
           py::arg("max_num_seqs"), py::arg("max_num_batched_tokens"), py::arg("kv_cache_bytes"),
           py::arg("enable_prefix_caching"), py::call_guard<py::gil_scoped_release>())
      .def(
          "generate",
          [](Runner& r, const std::vector<Request>& requests, const py::object& tick) {
            std::function<void(int)> cb = [&tick](int finished) {
              py::gil_scoped_acquire gil;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C
              if (!tick.is_none()) tick(finished);
            };
            py::gil_scoped_release release;
            return r.generate(requests, cb);
          },
          py::arg("requests"), py::arg("tick") = py::none())
      .def("update_weights", &Runner::update_weights, py::arg("path"),
           py::call_guard<py::gil_scoped_release>())
      .def("encode", &Runner::encode, py::arg("text"), py::arg("add_special_tokens"))
      .def("decode", &Runner::decode, py::arg("ids"), py::arg("skip_special_tokens"))
      .def("render_chat", &Runner::render_chat, py::arg("body_json"))
      .def_property_readonly("has_tokenizer", &Runner::has_tokenizer)
      .def_property_readonly("has_chat_template", &Runner::has_chat_template)
      .def_property_readonly("eos_ids", &Runner::eos_ids)
      .def_property_readonly("max_model_len", &Runner::max_model_len)
      .def_property_readonly("vocab_size", &Runner::vocab_size)
      .def_property_readonly("device", &Runner::device)
      .def_property_readonly("batch_invariant", &Runner::batch_invariant)
      .def_property_readonly("generation_defaults", [](const Runner& r) {
        const io::GenerationConfig& g = r.generation_config();
        py::dict d;
        if (g.temperature) d["temperature"] = *g.temperature;
        if (g.top_p) d["top_p"] = *g.top_p;
        if (g.top_k) d["top_k"] = *g.top_k;
        if (g.min_p) d["min_p"] = *g.min_p;
        if (g.repetition_penalty) d["repetition_penalty"] = *g.repetition_penalty;
        return d;
      });
}
