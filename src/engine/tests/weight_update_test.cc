// Engine::update_weights on a tiny Qwen3 fixture and a perturbed copy of it written here: swapping
// gives the bits of a fresh load, requests added before an update finish on the old weights while
// later ones wait and run on the new ones (prefix cache cleared), and every bad checkpoint (wrong
// name, shape, dtype, missing or corrupt file) is refused with the engine left as it was.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/engine.h"
#include "io/safetensors.h"

using namespace bitexact;
using namespace bitexact::engine;
namespace fs = std::filesystem;

namespace {

const std::string kFixture = std::string(BITEXACT_SOURCE_DIR) + "/fixtures/qwen3-tiny-f32-untied";

// A tensor as written: name, dtype string, shape, bytes.
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<RawTensor> read_fixture() {
  io::SafetensorsCheckpoint ck = io::SafetensorsCheckpoint::open(kFixture);
  std::vector<RawTensor> out;
  for (const auto& [name, e] : ck.tensors()) {
    EXPECT_EQ(e.dtype, DType::kF32);
    out.push_back({name, "F32", e.shape, std::vector<uint8_t>(e.data, e.data + e.nbytes)});
  }
  return out;
}

void write_safetensors(const fs::path& file, const std::vector<RawTensor>& ts) {
  nlohmann::json header = nlohmann::json::object();
  size_t off = 0;
  for (const RawTensor& t : ts) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');  // data 8-byte aligned, as the safetensors package writes
  const uint64_t n = h.size();
  std::ofstream f(file, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(h.data(), std::streamsize(n));
  for (const RawTensor& t : ts)
    f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
}

// Every f32 value scaled by 1.25: a different model of the same shapes.
std::vector<RawTensor> perturbed(std::vector<RawTensor> ts) {
  for (RawTensor& t : ts)
    for (size_t i = 0; i + 4 <= t.bytes.size(); i += 4) {
      float x;
      std::memcpy(&x, &t.bytes[i], 4);
      x *= 1.25f;
      std::memcpy(&t.bytes[i], &x, 4);
    }
  return ts;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("bitexact-weights-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

// A checkpoint folder holding `ts`.
fs::path checkpoint(TempDir& d, const std::string& name, const std::vector<RawTensor>& ts) {
  fs::path dir = d.path / name;
  fs::create_directories(dir);
  write_safetensors(dir / "model.safetensors", ts);
  return dir;
}

RequestSpec request(const std::string& id, std::vector<int32_t> prompt, double temperature) {
  RequestSpec r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.params.max_tokens = 12;
  r.params.temperature = temperature;
  r.params.seed = 7;
  r.params.logprobs = 2;
  r.params.ignore_eos = true;
  return r;
}

// Tokens and logprob bits of a finished request.
struct Result {
  std::vector<int32_t> tokens;
  std::vector<uint32_t> lp_bits;
  bool operator==(const Result&) const = default;
};

void collect(std::map<std::string, Result>& out, const std::vector<RequestOutput>& outs) {
  for (const RequestOutput& o : outs)
    for (const SampleDelta& d : o.samples) {
      Result& r = out[o.id];
      r.tokens.insert(r.tokens.end(), d.token_ids.begin(), d.token_ids.end());
      for (const TokenLogprob& t : d.logprobs) {
        uint32_t b;
        std::memcpy(&b, &t.logprob, 4);
        r.lp_bits.push_back(b);
        for (auto [id, lp] : t.top) {
          std::memcpy(&b, &lp, 4);
          r.lp_bits.push_back(uint32_t(id) ^ b);
        }
      }
    }
}

std::map<std::string, Result> run_all(Engine& e, const std::vector<RequestSpec>& rs) {
  std::map<std::string, Result> out;
  for (const RequestSpec& r : rs) e.add_request(r);
  while (e.has_unfinished()) collect(out, e.step());
  return out;
}

const std::vector<int32_t> kPromptA = {5,   17, 300,  42, 9, 1000, 77, 3,  12,
                                       640, 8,  2000, 31, 4, 55,   6,  90, 18};
const std::vector<int32_t> kPromptB = {5, 17,   300, 42, 9,  1000, 77, 3, 12, 640,
                                       8, 2000, 31,  4,  55, 6,    7,  7, 7};

std::vector<RequestSpec> requests() {
  return {request("greedy", kPromptA, 0.0), request("sampled", kPromptB, 0.9)};
}

// Outputs of a fresh model loaded from `dir`.
std::map<std::string, Result> fresh(const std::string& dir) {
  auto m = model::Model::load(dir, {});
  EngineConfig c;
  c.block_size = 4;
  Engine e(*m, nullptr, c);
  return run_all(e, requests());
}

struct Twins {
  TempDir tmp;
  fs::path other;  // the perturbed checkpoint
  std::unique_ptr<model::Model> model = model::Model::load(kFixture, {});
  std::unique_ptr<Engine> engine;
  Twins() {
    other = checkpoint(tmp, "other", perturbed(read_fixture()));
    fs::copy_file(kFixture + "/config.json", other / "config.json");  // for fresh loads
    EngineConfig c;
    c.block_size = 4;  // the shared prompt prefix fills cache blocks
    engine = std::make_unique<Engine>(*model, nullptr, c);
  }
};

}  // namespace

TEST(WeightUpdate, SwapsToAnotherCheckpointAndBackWithFreshLoadBits) {
  Twins s;
  const auto a = fresh(kFixture), b = fresh(s.other.string());
  ASSERT_NE(a, b);  // the two checkpoints really differ
  EXPECT_EQ(run_all(*s.engine, requests()), a);
  // Safetensors alone, as a trainer writes them: the model's own config applies.
  const fs::path bare = checkpoint(s.tmp, "bare", perturbed(read_fixture()));
  int done = 0;
  s.engine->update_weights(bare.string(), [&] { ++done; });
  EXPECT_EQ(done, 1);  // nothing was running: swapped at once
  EXPECT_FALSE(s.engine->weight_update_pending());
  EXPECT_EQ(run_all(*s.engine, requests()), b);  // the prefix cache of the first run is not reused
  s.engine->update_weights(kFixture);
  EXPECT_EQ(run_all(*s.engine, requests()), a);
}

TEST(WeightUpdate, RunningRequestsFinishOnOldWeightsAndLaterOnesWaitForTheNew) {
  Twins s;
  const auto a = fresh(kFixture), b = fresh(s.other.string());
  Engine& e = *s.engine;
  std::map<std::string, Result> out;
  // Warm the prefix cache with the old weights, then start "greedy" and let it run a while.
  e.add_request(request("warm", kPromptB, 0.0));
  while (e.has_unfinished()) e.step();
  e.add_request(requests()[0]);
  for (int i = 0; i < 3; ++i) collect(out, e.step());
  ASSERT_GT(out["greedy"].tokens.size(), 0u);
  int done = 0;
  e.update_weights(s.other.string(), [&] { ++done; });
  EXPECT_TRUE(e.weight_update_pending());
  EXPECT_EQ(done, 0);
  // Added during the drain: must wait, then run on the new weights without the stale cache.
  e.add_request(requests()[1]);
  EXPECT_THROW(e.update_weights(kFixture), Error);  // one update at a time
  while (e.has_unfinished()) {
    const bool before = done == 0;
    auto outs = e.step();
    if (before) {
      for (const auto& o : outs)
        EXPECT_NE(o.id, "sampled") << "a later request ran on the old weights";
    }
    collect(out, outs);
  }
  EXPECT_EQ(done, 1);
  EXPECT_EQ(out["greedy"], a.at("greedy"));
  EXPECT_EQ(out["sampled"], b.at("sampled"));
  EXPECT_EQ(e.stats().kv_blocks_free, e.stats().kv_blocks_total);
}

TEST(WeightUpdate, AbortingTheLastOlderRequestAppliesTheUpdate) {
  Twins s;
  Engine& e = *s.engine;
  e.add_request(requests()[0]);
  e.step();
  int done = 0;
  e.update_weights(s.other.string(), [&] { ++done; });
  EXPECT_EQ(done, 0);
  e.abort("greedy");
  EXPECT_EQ(done, 1);
  while (e.has_unfinished()) e.step();
  EXPECT_EQ(run_all(e, requests()), fresh(s.other.string()));
}

TEST(WeightUpdate, RefusesBadCheckpointsAndKeepsTheOldWeights) {
  Twins s;
  const auto a = fresh(kFixture);
  std::vector<RawTensor> good = read_fixture();
  auto with = [&](const std::string& name,
                  const std::function<void(std::vector<RawTensor>&)>& edit) {
    std::vector<RawTensor> ts = good;
    edit(ts);
    return checkpoint(s.tmp, name, ts).string();
  };
  auto expect_refused = [&](const std::string& dir, const std::string& needle) {
    try {
      s.engine->update_weights(dir);
      ADD_FAILURE() << "accepted " << dir;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
    EXPECT_FALSE(s.engine->weight_update_pending());
    EXPECT_EQ(run_all(*s.engine, requests()), a) << "state changed after refusing " << dir;
  };
  auto find = [](std::vector<RawTensor>& ts, const std::string& name) -> RawTensor& {
    for (RawTensor& t : ts)
      if (t.name == name) return t;
    throw std::runtime_error("no " + name);
  };
  expect_refused(
      with("renamed", [&](auto& ts) { find(ts, "model.norm.weight").name = "norm.weight"; }),
      "missing tensor `model.norm.weight`");
  expect_refused(with("extra",
                      [&](auto& ts) {
                        ts.push_back(find(ts, "model.norm.weight"));
                        ts.back().name = "model.extra.weight";
                      }),
                 "`model.extra.weight` (in ");
  expect_refused(with("shape",
                      [](auto& ts) {
                        for (RawTensor& t : ts)
                          if (t.name == "model.norm.weight") t.shape = {t.shape[0] / 2, 2};
                      }),
                 "model.norm.weight");
  expect_refused(with("dtype",
                      [](auto& ts) {  // bf16: the upper half of each f32
                        for (RawTensor& t : ts) {
                          std::vector<uint8_t> half;
                          for (size_t i = 0; i < t.bytes.size(); i += 4)
                            half.insert(half.end(), t.bytes.begin() + long(i) + 2,
                                        t.bytes.begin() + long(i) + 4);
                          t.bytes = half;
                          t.dtype = "BF16";
                        }
                      }),
                 "dtype");
  expect_refused((s.tmp.path / "nowhere").string(), "nowhere");
  const fs::path corrupt = s.tmp.path / "corrupt";
  fs::create_directories(corrupt);
  fs::copy_file(kFixture + "/model.safetensors", corrupt / "model.safetensors");
  fs::resize_file(corrupt / "model.safetensors", fs::file_size(corrupt / "model.safetensors") / 2);
  expect_refused(corrupt.string(), "model.safetensors");
  expect_refused(std::string(BITEXACT_SOURCE_DIR) + "/fixtures/qwen3-tiny-f32-tied",
                 "");  // other shapes
}
