# LLM.update_weights: swapping to a perturbed copy of a fixture (same names and shapes, written
# with the safetensors package) and back gives the bits of a fresh load of each; a checkpoint that
# does not fit (other shapes, a misnamed or extra tensor, another dtype, a missing or corrupt
# file) is refused with a clear error and the old weights keep working; an update from another
# thread waits for the generate() in flight, which runs with the GIL released.
import shutil
import threading
import time

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bitexact import LLM, SamplingParams
from conftest import FIXTURES, QWEN, perturbed_copy, signature

PROMPTS = [{"prompt_token_ids": [5, 17, 300, 42, 9, 1000, 77, 3]}, {"prompt_token_ids": [8, 2000, 31] * 6}]
PARAMS = [SamplingParams(temperature=0.0, max_tokens=12, logprobs=2, ignore_eos=True),
          SamplingParams(temperature=0.8, seed=21, max_tokens=12, logprobs=2, ignore_eos=True)]


def run(llm):
    return signature(llm.generate(PROMPTS, PARAMS, use_tqdm=False))


@pytest.fixture(scope="module")
def reference(qwen_other):
    return run(LLM(str(QWEN), device="cpu")), run(LLM(str(qwen_other), device="cpu"))


def test_swap_and_back_equal_fresh_loads(qwen_other, reference, tmp_path):
    a, b = reference
    assert a != b  # the two checkpoints really differ
    llm = LLM(str(QWEN), device="cpu")
    assert run(llm) == a
    # A trainer's output: safetensors only, no config.json.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(qwen_other / "model.safetensors", bare / "model.safetensors")
    llm.update_weights(bare)
    assert run(llm) == b
    llm.update_weights(str(QWEN))
    assert run(llm) == a
    llm.update_weights(qwen_other / "model.safetensors")  # a file works too
    assert run(llm) == b


def edited(tmp_path, name, edit):
    tensors = load_file(str(QWEN / "model.safetensors"))
    edit(tensors)
    d = tmp_path / name
    d.mkdir()
    save_file(tensors, str(d / "model.safetensors"))
    return d


def test_mismatched_checkpoints_are_refused_and_old_weights_keep_working(reference, tmp_path):
    a, _ = reference
    llm = LLM(str(QWEN), device="cpu")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    data = (QWEN / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])

    def rename(t):
        t["model.norm.weight_renamed"] = t.pop("model.norm.weight")

    def extra(t):
        t["model.extra.weight"] = np.zeros(4, np.float32)

    def reshape(t):
        t["model.norm.weight"] = np.ones((t["model.norm.weight"].shape[0] * 2,), np.float32)

    cases = [
        (FIXTURES / "qwen3-tiny-f32-tied", ValueError, "shape"),  # another model's shapes
        (edited(tmp_path, "renamed", rename), ValueError, "missing tensor `model.norm.weight`"),
        (edited(tmp_path, "extra", extra), ValueError, "`model.extra.weight`"),
        (edited(tmp_path, "reshaped", reshape), ValueError, "model.norm.weight"),
        (perturbed_copy(QWEN, tmp_path / "f16", scale=1.0, dtype=np.float16), ValueError, "dtype"),
        (tmp_path / "does-not-exist", OSError, "does-not-exist"),
        (corrupt, ValueError, "model.safetensors"),
    ]
    for path, error, needle in cases:
        with pytest.raises(error) as info:
            llm.update_weights(path)
        assert needle in str(info.value), (path, str(info.value))
        assert run(llm) == a, f"the weights changed after refusing {path}"


def test_update_from_another_thread_waits_for_the_running_batch(qwen_other, reference):
    _, b = reference
    llm = LLM(str(QWEN), device="cpu")
    batch = [{"prompt_token_ids": [3 + i, 40, 500]} for i in range(64)]
    params = SamplingParams(temperature=0.7, seed=2, max_tokens=160, ignore_eos=True, logprobs=0)
    old = signature(LLM(str(QWEN), device="cpu").generate(batch, params, use_tqdm=False))
    started, result = threading.Event(), {}

    class Bar:  # use_tqdm accepts a tqdm-like class; made right before the engine starts
        def __init__(self, total, desc):
            self.n = 0
            started.set()

        def update(self, k):
            self.n += k

        def close(self):
            pass

    worker = threading.Thread(target=lambda: result.update(out=signature(llm.generate(batch, params, use_tqdm=Bar))))
    worker.start()
    assert started.wait(30)
    # The engine runs without the GIL: this thread keeps running Python meanwhile.
    spins, deadline = 0, time.monotonic() + 0.2
    while worker.is_alive() and time.monotonic() < deadline:
        spins += 1
    llm.update_weights(qwen_other)  # waits for the batch in flight
    worker.join()
    assert spins > 1000
    assert result["out"] == old  # the whole batch saw the old weights
    assert run(llm) == b
