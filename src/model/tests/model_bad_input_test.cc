// Loading a broken checkpoint gives an Error naming the problem, never a crash: a tensor of the
// wrong shape or dtype, a missing tensor, a config with a missing or wrong field, an unknown
// architecture, a truncated safetensors file, and a path that is not a model.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/weights.h"

using namespace bitexact;
namespace fs = std::filesystem;

namespace {

const fs::path kFixture = fs::path(BITEXACT_SOURCE_DIR) / "fixtures" / "qwen3-tiny-f32-tied";

// A scratch copy of the fixture that a test may damage.
struct ScratchModel {
  fs::path dir;
  explicit ScratchModel(const std::string& name) {
    dir = fs::temp_directory_path() / ("bitexact_bad_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(kFixture / f, dir / f);
  }
  ~ScratchModel() { fs::remove_all(dir); }
  nlohmann::json config() { return nlohmann::json::parse(std::ifstream(dir / "config.json")); }
  void write_config(const nlohmann::json& j) { std::ofstream(dir / "config.json") << j.dump(); }
  // Rewrites the safetensors header through `edit`, keeping the data section as it is.
  void edit_header(const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(dir / "model.safetensors", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
    edit(h);
    std::string header = h.dump();
    header.resize(n > header.size() ? n : header.size(), ' ');  // keep the data offset if we can
    uint64_t m = header.size();
    std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&m), 8);
    out << header << bytes.substr(8 + n);
  }
};

void expect_error(const fs::path& path, const std::string& needle) {
  try {
    model::load_weights(path.string(), Device::kCpu);
    ADD_FAILURE() << "loading " << path << " should fail with: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ModelBadInput, TensorWithWrongShape) {
  ScratchModel m("shape");
  m.edit_header([](nlohmann::json& h) {
    auto& t = h["model.layers.1.self_attn.q_proj.weight"];
    std::swap(t["shape"][0], t["shape"][1]);  // same byte size, transposed shape
  });
  expect_error(m.dir, "model.layers.1.self_attn.q_proj.weight` has shape");
}

TEST(ModelBadInput, TensorWithWrongDtype) {
  ScratchModel m("dtype");
  m.edit_header([](nlohmann::json& h) {
    auto& t = h["model.norm.weight"];
    t["dtype"] = "BF16";
    t["shape"][0] = t["shape"][0].get<int>() * 2;  // the same bytes read as twice as many bf16
  });
  expect_error(m.dir, "model.norm.weight");
}

TEST(ModelBadInput, MissingTensor) {
  ScratchModel m("missing");
  m.edit_header([](nlohmann::json& h) { h.erase("model.layers.0.mlp.up_proj.weight"); });
  expect_error(m.dir, "missing tensor `model.layers.0.mlp.up_proj.weight`");
}

TEST(ModelBadInput, ConfigMissingField) {
  ScratchModel m("config");
  auto c = m.config();
  c.erase("hidden_size");
  m.write_config(c);
  expect_error(m.dir, "hidden_size");
}

TEST(ModelBadInput, ConfigWrongType) {
  ScratchModel m("type");
  auto c = m.config();
  c["num_hidden_layers"] = "two";
  m.write_config(c);
  expect_error(m.dir, "num_hidden_layers");
}

TEST(ModelBadInput, UnknownArchitecture) {
  ScratchModel m("arch");
  auto c = m.config();
  c["model_type"] = "mamba";
  c["architectures"] = {"MambaForCausalLM"};
  m.write_config(c);
  expect_error(m.dir, "mamba");
}

TEST(ModelBadInput, TruncatedSafetensors) {
  ScratchModel m("trunc");
  fs::resize_file(m.dir / "model.safetensors", fs::file_size(m.dir / "model.safetensors") / 2);
  expect_error(m.dir, "model.safetensors");
}

TEST(ModelBadInput, NotAModel) {
  expect_error(fs::path(BITEXACT_SOURCE_DIR) / "README.md", "neither a .gguf file nor a folder");
  expect_error(fs::path("/nonexistent/model.gguf"), "/nonexistent/model.gguf");
}
