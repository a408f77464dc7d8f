// The kernel benchmarks are both stand-alone programs (bench_gemm, bench_attention) and, built
// with BITEXACT_BENCH_AS_LIBRARY, functions of the `bitexact` binary (`bitexact bench kernels`).
// Each benchmark file names its entry point with BITEXACT_BENCH_ENTRY(name).
#pragma once

#ifdef BITEXACT_BENCH_AS_LIBRARY
#define BITEXACT_BENCH_ENTRY(name) name##_main
#else
#define BITEXACT_BENCH_ENTRY(name) main
#endif

// argv[0] is ignored; the rest as the stand-alone program's arguments. Return an exit code.
int bench_gemm_main(int argc, char** argv);
int bench_attention_main(int argc, char** argv);
