// The in-process group: all_gather and broadcast deliver every rank's bytes unchanged at every
// group size (in place too), mismatched sizes and aborts make every rank throw instead of hang.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "dist/in_process_communicator.h"
#include "dist/nccl_communicator.h"

using namespace bitexact;
using namespace bitexact::dist;

namespace {

// Runs fn(rank) on one thread per rank; returns how many ranks threw.
template <typename F>
int run_ranks(int n, F fn) {
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int r = 0; r < n; ++r)
    ts.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const Error&) {
        ++errors;
      }
    });
  for (auto& t : ts) t.join();
  return errors;
}

float value(int rank, int i, int round) { return float(rank * 1000 + i) + 0.25f * float(round); }

}  // namespace

TEST(InProcessGroup, AllGatherDeliversEveryRankInOrder) {
  for (int n : {1, 2, 4, 8}) {
    InProcessGroup g(n);
    const int count = 37;
    std::vector<std::vector<float>> recv(size_t(n), std::vector<float>(size_t(n * count), -1.0f));
    ASSERT_EQ(
        run_ranks(n,
                  [&](int r) {
                    for (int round = 0; round < 5;
                         ++round) {  // repeated: the barrier must reset cleanly
                      std::vector<float> send(count);
                      for (int i = 0; i < count; ++i) send[size_t(i)] = value(r, i, round);
                      Tensor s = Tensor::view(send.data(), DType::kF32, {count});
                      Tensor d = Tensor::view(recv[size_t(r)].data(), DType::kF32, {n, count});
                      all_gather(g.rank(r), s, d, nullptr);
                      for (int src = 0; src < n; ++src)
                        for (int i = 0; i < count; ++i)
                          if (recv[size_t(r)][size_t(src * count + i)] != value(src, i, round))
                            throw Error(ErrorKind::kInternal, "bad");
                    }
                  }),
        0)
        << "n=" << n;
  }
}

TEST(InProcessGroup, AllGatherInPlace) {
  const int n = 4, count = 16;
  InProcessGroup g(n);
  std::vector<std::vector<int32_t>> buf(size_t(n), std::vector<int32_t>(size_t(n * count), 0));
  ASSERT_EQ(run_ranks(n,
                      [&](int r) {
                        int32_t* mine = buf[size_t(r)].data() + r * count;
                        for (int i = 0; i < count; ++i) mine[i] = r * 100 + i;
                        g.rank(r).all_gather(mine, buf[size_t(r)].data(), count * 4, nullptr);
                      }),
            0);
  for (int r = 0; r < n; ++r)
    for (int src = 0; src < n; ++src)
      for (int i = 0; i < count; ++i)
        EXPECT_EQ(buf[size_t(r)][size_t(src * count + i)], src * 100 + i);
}

TEST(InProcessGroup, BroadcastCopiesRoot) {
  const int n = 4;
  InProcessGroup g(n);
  std::vector<std::vector<uint8_t>> buf(size_t(n), std::vector<uint8_t>(100));
  ASSERT_EQ(run_ranks(n,
                      [&](int r) {
                        std::memset(buf[size_t(r)].data(), r + 1, 100);
                        g.rank(r).broadcast(buf[size_t(r)].data(), 100, 2, nullptr);
                      }),
            0);
  for (int r = 0; r < n; ++r) EXPECT_EQ(buf[size_t(r)][99], 3);
}

TEST(InProcessGroup, MismatchedSizesThrowOnEveryRank) {
  const int n = 3;
  InProcessGroup g(n);
  std::vector<char> a(64);
  std::vector<std::vector<char>> outs(size_t(n), std::vector<char>(size_t(64 * n)));
  EXPECT_EQ(run_ranks(n,
                      [&](int r) {
                        g.rank(r).all_gather(a.data(), outs[size_t(r)].data(), r == 1 ? 32 : 64,
                                             nullptr);
                      }),
            n);
}

TEST(InProcessGroup, AbortWakesBlockedRanks) {
  const int n = 4;
  InProcessGroup g(n);
  std::vector<std::vector<char>> outs(size_t(n), std::vector<char>(size_t(8 * n)));
  // Rank 3 fails before the collective; the others must not wait forever.
  EXPECT_EQ(run_ranks(n,
                      [&](int r) {
                        if (r == 3) {
                          g.rank(r).abort();
                          throw Error(ErrorKind::kInternal, "rank 3 failed");
                        }
                        char send[8] = {};
                        g.rank(r).all_gather(send, outs[size_t(r)].data(), 8, nullptr);
                      }),
            n);
}

TEST(InProcessGroup, RejectsEmptyGroup) { EXPECT_THROW(InProcessGroup(0), Error); }

TEST(NcclGroup, UnavailableWithoutNcclIsAClearError) {
  if (nccl_available()) GTEST_SKIP() << "NCCL build: needs GPUs, covered on the device machine";
  try {
    NcclGroup g({0, 1});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  }
}
