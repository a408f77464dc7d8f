// CUDA streams and graphs for the model runner: decode steps are captured once per shape
// bucket and replayed, removing hundreds of launch gaps per token. Replays run the same kernels
// with the same grids as eager execution, so they give the same bits (tested: I7).
#include <atomic>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace bitexact::ops::cuda {

void* create_stream() {
  cudaStream_t s = nullptr;
  BITEXACT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void destroy_stream(void* stream) {
  if (stream) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream));
}

void graph_begin_capture(const ExecContext& ctx) {
  BITEXACT_CUDA_CHECK(cudaStreamBeginCapture(stream_of(ctx), cudaStreamCaptureModeThreadLocal));
}

void* graph_end_capture(const ExecContext& ctx) {
  cudaGraph_t graph = nullptr;
  BITEXACT_CUDA_CHECK(cudaStreamEndCapture(stream_of(ctx), &graph));
  cudaGraphExec_t exec = nullptr;
  cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  BITEXACT_CUDA_CHECK(err);
  return exec;
}

void graph_launch(const ExecContext& ctx, void* exec) {
  BITEXACT_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream_of(ctx)));
}

void graph_destroy(void* exec) {
  if (exec) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

namespace {
std::atomic<uint64_t> g_workspace_epoch{0};
}

uint64_t workspace_epoch() { return g_workspace_epoch.load(); }
void bump_workspace_epoch() { g_workspace_epoch.fetch_add(1); }

}  // namespace bitexact::ops::cuda
