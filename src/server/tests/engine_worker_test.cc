// The server's engine thread after an engine step fails (a kernel fault on a GPU): the requests
// in flight fail with 500, failure() reports the cause (so /health answers 503) and every later
// submit is refused with 503 instead of being run on an engine that can no longer be trusted.
// The fault is injected with EngineConfig::fail_at_step on the CPU engine (stories260K).
#include "server/engine_worker.h"

#include <gtest/gtest.h>

#include "model/model.h"
#include "server/api_error.h"

using namespace bitexact;

namespace {

const std::string kStories = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";

engine::RequestSpec spec(const std::string& id) {
  engine::RequestSpec r;
  r.id = id;
  r.prompt = {1, 400, 22, 17};
  r.params.max_tokens = 8;
  r.params.temperature = 0;
  return r;
}

// Waits until the channel is finished; returns what arrived.
std::vector<engine::RequestOutput> drain(server::RequestChannel& ch) {
  std::vector<engine::RequestOutput> outs;
  for (int i = 0; i < 200 && !ch.finished(); ++i) ch.pop(outs, std::chrono::milliseconds(50));
  return outs;
}

TEST(EngineWorker, HealthyEngineServes) {
  auto model = model::Model::load(kStories, {});
  engine::Engine eng(*model, nullptr, engine::EngineConfig{});
  server::ServerMetrics metrics("stories");
  server::EngineWorker worker(eng, metrics, 16);
  auto ch = worker.submit({spec(worker.next_id("a"))});
  ASSERT_EQ(ch->wait_admitted(), server::RequestChannel::State::kAccepted);
  drain(*ch);
  EXPECT_TRUE(ch->finished());
  EXPECT_FALSE(worker.failure().has_value());
  worker.stop();
}

TEST(EngineWorker, FailedStepMakesTheServerUnhealthy) {
  auto model = model::Model::load(kStories, {});
  engine::EngineConfig config;
  config.fail_at_step = 3;  // the prefill and one decode step succeed, then the "device" faults
  engine::Engine eng(*model, nullptr, config);
  server::ServerMetrics metrics("stories");
  server::EngineWorker worker(eng, metrics, 16);
  auto ch = worker.submit({spec(worker.next_id("a")), spec(worker.next_id("b"))});
  ASSERT_EQ(ch->wait_admitted(), server::RequestChannel::State::kAccepted);
  drain(*ch);
  ASSERT_TRUE(ch->finished());
  EXPECT_EQ(ch->error_status(), 500);
  EXPECT_NE(ch->error_message().find("injected engine fault"), std::string::npos) << ch->error_message();
  ASSERT_TRUE(worker.failure().has_value());
  EXPECT_NE(worker.failure()->find("injected engine fault"), std::string::npos);
  try {
    worker.submit({spec(worker.next_id("c"))});
    FAIL() << "a failed engine accepted a request";
  } catch (const server::ApiError& e) {
    EXPECT_EQ(e.status(), 503);
  }
  worker.stop();
}

}  // namespace
