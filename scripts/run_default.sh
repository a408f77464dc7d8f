#!/usr/bin/env bash
# The main job on the embedded default model: builds bitexact (CPU) and generates a greedy
# continuation of "Once upon a time" with stories260K, a real tiny Llama. The model is taken
# from ../shared/models, or downloaded from its public source when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${BITEXACT_MODEL:-../shared/models/stories260K.gguf}"
if [ ! -f "$MODEL" ]; then
  MODEL=build/models/stories260K.gguf
  if [ ! -f "$MODEL" ]; then
    mkdir -p build/models
    echo "fetching stories260K.gguf from huggingface.co/ggml-org/models"
    curl -fL --retry 3 -o "$MODEL.part" \
      https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf
    mv "$MODEL.part" "$MODEL"
  fi
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBITEXACT_CUDA=OFF >/dev/null
cmake --build build --target bitexact -j"$(nproc)"
./build/apps/bitexact generate --model "$MODEL" --prompt "Once upon a time" --max-tokens 48 \
  --temperature 0 "$@"
