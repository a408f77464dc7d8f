// load_tokenizer: picks the tokenizer.json or GGUF implementation from the path, and the UTF-8
// input check every encode starts with.
#include <filesystem>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {

void check_utf8_input(std::string_view text) {
  size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    fail(ErrorKind::kInvalidArgument,
         "tokenizer: input text is not valid UTF-8 (first bad byte at offset " +
             std::to_string(bad) + ")");
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    fs::path json = fs::path(path) / "tokenizer.json";
    if (!fs::exists(json, ec))
      fail(ErrorKind::kIo, path + ": folder has no tokenizer.json (only tokenizer.json-based "
                                  "tokenizers are supported for model folders)");
    fs::path config = fs::path(path) / "tokenizer_config.json";
    return load_hf_tokenizer(json.string(), fs::exists(config, ec) ? config.string() : "");
  }
  if (!fs::exists(path, ec)) fail(ErrorKind::kIo, path + ": no such file or folder");
  if (fs::path(path).extension() == ".gguf") return load_gguf_tokenizer(path);
  // A tokenizer.json file: take tokenizer_config.json from beside it when there is one.
  fs::path config = fs::path(path).parent_path() / "tokenizer_config.json";
  return load_hf_tokenizer(path, fs::exists(config, ec) ? config.string() : "");
}

}  // namespace bitexact::tok
