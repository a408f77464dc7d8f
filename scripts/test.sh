#!/usr/bin/env bash
# Builds bitexact and runs every test that needs no GPU, as CI does:
#   1. the main build (the CUDA backend is compiled when nvcc is present; its tests need a GPU
#      and run through scripts/gpu_check.sh on the device machine instead), and the Python package
#      installed by `pip install .` with the same flags (so ccache serves it) and smoke-tested;
#   2. reference data from the Hugging Face packages (tokenizer ids, chat template renders);
#   3. unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   4. the libFuzzer targets for a bounded time (BITEXACT_FUZZ_SECONDS, default 30 each);
#   5. the whole CTest suite (unit, ops, e2e, invariance, server), whose summary ends the output.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${BITEXACT_JOBS:-$(nproc)}"
FUZZ_SECONDS="${BITEXACT_FUZZ_SECONDS:-30}"
# Leave the build folder out of ccache's key: `pip install .` builds the same sources with the
# same flags in build-wheel/, and then compiles nothing.
export CCACHE_NOHASHDIR=1

echo "== build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"

echo "== Python package (pip install . from this checkout, then a generation with it)"
cuda=$(grep -q '^BITEXACT_CUDA:BOOL=ON' build/CMakeCache.txt && echo ON || echo OFF)
python3 -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps . \
  -C cmake.define.BITEXACT_CUDA="$cuda"
stories="$(cd ../shared && pwd)/models/stories260K.gguf"  # absolute: the check runs from /tmp
(cd /tmp && python3 -c '
import sys, bitexact
m = sys.argv[1]
out = bitexact.LLM(m, device="cpu").generate("Once upon a time", bitexact.SamplingParams(temperature=0, max_tokens=12), use_tqdm=False)
assert out[0].outputs[0].text.startswith(", there was a little girl named Lily"), out
print("bitexact", bitexact.__version__, "installed at", bitexact.__file__)' "$stories")
python3 -m pip uninstall -q -y bitexact  # the tests import the build's module (build/python)

echo "== reference data (Hugging Face tokenizers / transformers)"
python3 scripts/tokenizer_corpus.py --out build/tokref
python3 scripts/chat_template_reference.py --out build/chatref

echo "== sanitizers (unit tests under ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITEXACT_SANITIZE=ON -DBITEXACT_CUDA=OFF >/dev/null
# Only the unit-test binaries (and the CPU kernels' tests): the slow end-to-end suites run once,
# in the main build.
cmake --build build-asan -j"$JOBS" --target core_test io_test tokenizer_test tokenizer_hf_test \
  chat_template_test kv_test engine_unit_test model_bad_input_test ops_cpu_test dist_test sum_partials_test \
  server_unit_test
if ! BITEXACT_TOKREF="$PWD/build/tokref" BITEXACT_CHAT_REF="$PWD/build/chatref" \
    ctest --test-dir build-asan -L "unit|ops" --output-on-failure -j"$JOBS" > build-asan/ctest.log 2>&1; then
  cat build-asan/ctest.log
  echo "sanitizer tests failed"
  exit 1
fi
grep -E "tests passed|tests failed" build-asan/ctest.log

echo "== fuzzers (${FUZZ_SECONDS}s each)"
scripts/run_fuzzers.sh "$FUZZ_SECONDS"

echo "== tests"
BITEXACT_TOKREF="$PWD/build/tokref" BITEXACT_CHAT_REF="$PWD/build/chatref" \
  ctest --test-dir build -LE cuda --output-on-failure -j"$JOBS"
