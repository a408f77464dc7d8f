// libFuzzer target: arbitrary bytes as config.json and as generation_config.json. Anything that
// is not a valid config must end in bitexact::Error (no other exception, no crash).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    bitexact::io::parse_model_config(text, "config.json");
  } catch (const bitexact::Error&) {
  }
  try {
    bitexact::io::parse_generation_config(text, "generation_config.json");
  } catch (const bitexact::Error&) {
  }
  return 0;
}
