# Fixtures for the Python API tests: the bitexact CLI (for bit-equality checks), the models
# (stories260K with its tokenizer, tiny Qwen3/Llama fixtures with token-id prompts), a perturbed
# copy of a fixture (same names and shapes, other values), and helpers that compare results bit for
# bit. Run: PYTHONPATH=build/python python3 -m pytest tests/python --bitexact-bin build/apps/bitexact
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
STORIES = (REPO / ".." / "shared" / "models" / "stories260K.gguf").resolve()
FIXTURES = REPO / "fixtures"
QWEN = FIXTURES / "qwen3-tiny-f32-untied"


def pytest_addoption(parser):
    parser.addoption("--bitexact-bin", default=str(REPO / "build" / "apps" / "bitexact"),
                     help="path of the bitexact binary")


@pytest.fixture(scope="session")
def binary(request):
    path = request.config.getoption("--bitexact-bin")
    if not Path(path).exists():
        pytest.exit(f"bitexact binary not found at {path} (give --bitexact-bin)", 2)
    return path


def run_cli(binary, model, requests, tmp_path, *extra):
    """`bitexact generate --input` on JSONL requests; its output lines, in order."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in requests))
    subprocess.run([binary, "generate", "--model", str(model), "--input", str(inp), "--output", str(out),
                    "--device", "cpu", *extra], check=True, capture_output=True, timeout=300)
    return [json.loads(line) for line in out.read_text().splitlines()]


def f32_bits(x):
    """The bits of a logprob as the engine computed it (an f32, carried exactly by a float)."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def signature(outputs):
    """Everything a result must reproduce, logprobs as f32 bits: per request, per sample. (Not the
    seed: a request without one gets a fresh one, which a greedy request does not use.)"""
    sig = []
    for o in outputs:
        for c in o.outputs:
            lps = None
            if c.logprobs is not None:
                lps = [[(t, f32_bits(lp.logprob), lp.rank) for t, lp in d.items()] for d in c.logprobs]
            sig.append((tuple(c.token_ids), c.text, c.finish_reason, c.stop_reason, repr(lps)))
    return sig


def perturbed_copy(src: Path, dst: Path, scale=1.25, dtype=None):
    """A checkpoint with src's tensor names and shapes and other values (every value * scale),
    written with the safetensors package; config.json comes along for fresh loads."""
    dst.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(src / "model.safetensors"))
    out = {k: (v * np.float32(scale)).astype(dtype or v.dtype) for k, v in tensors.items()}
    save_file(out, str(dst / "model.safetensors"))
    for name in ("config.json", "generation_config.json"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="session")
def qwen_other(tmp_path_factory):
    return perturbed_copy(QWEN, tmp_path_factory.mktemp("qwen-other"))
