// libFuzzer target: arbitrary bytes as a whole GGUF file, then the model config derived from it.
// Malformed input must end in bitexact::Error; accepted tensors must lie inside the buffer.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/gguf.h"
#include "io/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bitexact::io;
  try {
    GgufFile g = GgufFile::parse(data, size, "fuzz.gguf");
    volatile uint8_t sink = 0;
    for (const GgufTensorInfo& t : g.tensors()) {
      if (t.offset > size || t.nbytes > size - t.offset) __builtin_trap();
      const uint8_t* p = static_cast<const uint8_t*>(g.tensor(t).data);
      sink = sink ^ p[0] ^ p[t.nbytes - 1];
    }
    for (const auto& kv : g.metadata()) {
      const std::string& key = kv.first;
      // Exercise every typed getter on every key: each must return or throw Error.
      try {
        g.get_int(key);
      } catch (const bitexact::Error&) {
      }
      try {
        g.get_float(key);
      } catch (const bitexact::Error&) {
      }
      try {
        g.get_string(key);
      } catch (const bitexact::Error&) {
      }
      try {
        g.get_string_array(key);
      } catch (const bitexact::Error&) {
      }
      try {
        g.get_int_array(key);
      } catch (const bitexact::Error&) {
      }
      try {
        g.get_float_array(key);
      } catch (const bitexact::Error&) {
      }
    }
    model_config_from_gguf(g);
  } catch (const bitexact::Error&) {
  }
  return 0;
}
