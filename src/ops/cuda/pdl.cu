// The process-wide programmatic-dependent-launch switch of pdl.cuh.
#include <atomic>

#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda {
namespace {
std::atomic<bool> g_pdl{true};
}  // namespace

bool pdl_enabled() { return g_pdl.load(std::memory_order_relaxed); }
void set_pdl(bool on) { g_pdl.store(on, std::memory_order_relaxed); }

}  // namespace bitexact::ops::cuda
