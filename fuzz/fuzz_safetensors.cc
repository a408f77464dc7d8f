// libFuzzer target: arbitrary bytes as a whole safetensors file. Malformed input must end in
// bitexact::Error; accepted input must describe tensors that lie inside the buffer (ASan checks).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto entries = bitexact::io::parse_safetensors(data, size, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& e : entries) {
      if (e.nbytes == 0) continue;
      if (e.data < data || e.data + e.nbytes > data + size) __builtin_trap();
      sink = sink ^ e.data[0] ^ e.data[e.nbytes - 1];
    }
  } catch (const bitexact::Error&) {
  }
  return 0;
}
