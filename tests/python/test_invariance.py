# Batch invariance through the Python API: a prompt alone and the same prompt at a random place in
# a list of 64 mixed prompts (other lengths, greedy and sampled, other parameters) give the same
# tokens and logprob bits. With batch_invariant=False the same comparison differs, so the test can
# fail.
import random

import pytest

from bitexact import LLM, SamplingParams
from conftest import QWEN, STORIES, f32_bits


def target_requests(text_model):
    prompt = "Once upon a time, a little bird" if text_model else {"prompt_token_ids": [5, 80, 900, 33, 7, 1500, 2]}
    return [(prompt, SamplingParams(temperature=0.0, max_tokens=24, logprobs=3, ignore_eos=True)),
            (prompt, SamplingParams(temperature=0.9, top_p=0.95, seed=1234, max_tokens=24, logprobs=3,
                                    ignore_eos=True))]


def crowd(text_model, rng):
    """63 other requests: prompts of 1 to ~100 tokens, greedy and sampled, various lengths."""
    words = "the a dog cat sun ran big little happy tree went park and saw".split()
    out = []
    for i in range(63):
        n = rng.randint(1, 100)
        if text_model:
            prompt = " ".join(rng.choice(words) for _ in range(max(1, n // 2)))
        else:
            prompt = {"prompt_token_ids": [rng.randrange(3, 2000) for _ in range(n)]}
        params = SamplingParams(temperature=rng.choice([0.0, 0.7, 1.0]), top_k=rng.choice([0, 10]),
                                seed=rng.randrange(1 << 30), max_tokens=rng.randint(1, 40),
                                logprobs=rng.choice([None, 0, 2]), ignore_eos=True)
        out.append((prompt, params))
    return out


def bits(output):
    c = output.outputs[0]
    return c.token_ids, [[(t, f32_bits(lp.logprob)) for t, lp in d.items()] for d in c.logprobs]


def alone_vs_batch(llm, text_model, seed):
    rng = random.Random(seed)
    differ = []
    for prompt, params in target_requests(text_model):
        [alone] = llm.generate(prompt, params, use_tqdm=False)
        batch = crowd(text_model, rng)
        pos = rng.randrange(len(batch) + 1)
        batch.insert(pos, (prompt, params))
        assert len(batch) == 64
        outs = llm.generate([p for p, _ in batch], [s for _, s in batch], use_tqdm=False)
        differ.append(bits(alone) != bits(outs[pos]))
    return differ


@pytest.mark.parametrize("model", [STORIES, QWEN], ids=["stories260K", "qwen3-tiny"])
def test_alone_equals_inside_a_batch_of_64(model):
    llm = LLM(str(model), device="cpu")
    text_model = model == STORIES
    for seed in range(2):
        assert alone_vs_batch(llm, text_model, seed) == [False, False]


@pytest.mark.parametrize("model", [STORIES, QWEN], ids=["stories260K", "qwen3-tiny"])
def test_non_invariant_mode_differs(model):
    # Batch-dependent kernels (K split for small batches, short attention chunks): the same
    # comparison must see a difference, or the test above could not fail.
    llm = LLM(str(model), device="cpu", batch_invariant=False)
    assert not llm.batch_invariant
    assert any(alone_vs_batch(llm, model == STORIES, 0))
