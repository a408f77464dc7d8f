# vLLM's offline example (offline_example.py) runs as written with `bitexact` in place of `vllm`
# and a local model in place of the hub name, prints one line per prompt, and prints the same
# bytes on a second run (the seed fixes every sample).
import os
import subprocess
import sys
from pathlib import Path

from conftest import STORIES

EXAMPLE = Path(__file__).resolve().parent / "offline_example.py"


def run_example(tmp_path):
    src = EXAMPLE.read_text()
    assert "from vllm import LLM, SamplingParams" in src and 'LLM(model="Qwen/Qwen3-8B")' in src
    script = src.replace("from vllm import", "from bitexact import").replace("Qwen/Qwen3-8B", str(STORIES))
    path = tmp_path / "example.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], check=True, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return out.stdout


def test_offline_example_runs_as_written(tmp_path):
    first = run_example(tmp_path)
    lines = first.splitlines()
    assert len(lines) == 4 and all(line.startswith("Prompt: ") for line in lines)
    assert "Prompt: 'The capital of France is', Generated text: '" in first
    assert run_example(tmp_path) == first
