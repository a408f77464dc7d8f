# The Python API and the CLI (`bitexact generate`) give the same results for the same requests, bit
# for bit: token ids, text, seeds, finish and stop reasons, the sampled tokens' logprobs, the top-N
# logprobs and prompt logprobs, on stories260K (text prompts) and the tiny HF fixtures (token ids).
import pytest

from bitexact import LLM, SamplingParams
from conftest import FIXTURES, STORIES, f32_bits, run_cli

STORY_PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park. They", "A"]


def cases():
    """Sampling parameters, spelled the same as SamplingParams kwargs and as JSONL fields."""
    return [
        dict(temperature=0.0, max_tokens=20),
        dict(temperature=0.8, top_p=0.9, seed=11, max_tokens=24, logprobs=3),
        dict(temperature=1.0, top_k=20, min_p=0.05, seed=5, max_tokens=16, logprobs=2, prompt_logprobs=2),
        dict(temperature=0.7, seed=9, n=3, max_tokens=12, logprobs=1),
        dict(temperature=0.9, seed=3, max_tokens=30, min_tokens=4, ignore_eos=True, logprobs=0),
        dict(temperature=0.0, max_tokens=16, stop_token_ids=[13, 29], logprobs=0, prompt_logprobs=0),
    ]


def cli_line(kw, prompt_fields):
    line = dict(prompt_fields)
    line.update(kw)
    line.setdefault("logprobs", 0)  # the CLI always returns the sampled token's logprob
    return line


def compare(py_out, cli, kw):
    samples = cli.get("samples", [cli])
    assert len(py_out.outputs) == len(samples)
    for c, s in zip(py_out.outputs, samples):
        assert c.token_ids == s["token_ids"]
        assert c.text == s["text"]
        if "seed" in kw:
            assert c.seed == s["seed"]
        assert c.finish_reason == s["finish_reason"]
        assert (None if c.stop_reason is None else str(c.stop_reason)) == s["stop_reason"]
        assert len(c.logprobs) == len(s["logprobs"]) == len(c.token_ids)
        for i, (tok, d) in enumerate(zip(c.token_ids, c.logprobs)):
            assert f32_bits(d[tok].logprob) == f32_bits(s["logprobs"][i])
            if kw.get("logprobs", 0) > 0:
                top = [(e["token_id"], f32_bits(e["logprob"])) for e in s["top_logprobs"][i]]
                ranked = sorted((lp.rank, t, f32_bits(lp.logprob)) for t, lp in d.items() if lp.rank is not None)
                assert [(t, b) for _, t, b in ranked] == top
                assert [r for r, _, _ in ranked] == list(range(1, len(top) + 1))
    if "prompt_logprobs" in kw:
        ref = cli["prompt_logprobs"]
        assert py_out.prompt_logprobs[0] is None and ref[0] is None
        assert len(py_out.prompt_logprobs) == len(ref) == len(py_out.prompt_token_ids)
        for j in range(1, len(ref)):
            d, r = py_out.prompt_logprobs[j], ref[j]
            tok = py_out.prompt_token_ids[j]
            assert r["token_id"] == tok
            assert f32_bits(d[tok].logprob) == f32_bits(r["logprob"])
            for e in r.get("top", []):
                assert f32_bits(d[e["token_id"]].logprob) == f32_bits(e["logprob"])


def test_stories_text_prompts_equal_cli(binary, tmp_path):
    llm = LLM(str(STORIES), device="cpu")
    requests, expected = [], []
    for i, kw in enumerate(cases()):
        for p in STORY_PROMPTS[i % 2: i % 2 + 2]:
            requests.append(cli_line(kw, {"prompt": p}))
            expected.append((p, kw))
    cli = run_cli(binary, STORIES, requests, tmp_path)
    outs = llm.generate([p for p, _ in expected],
                        [SamplingParams(**{"logprobs": 0, **kw}) for _, kw in expected], use_tqdm=False)
    for o, c, (_, kw) in zip(outs, cli, expected):
        compare(o, c, kw)


def test_stories_stop_strings_equal_cli(binary, tmp_path):
    llm = LLM(str(STORIES), device="cpu")
    kw = dict(temperature=0.0, max_tokens=40, stop=["Lily", "park"])
    cli = run_cli(binary, STORIES, [cli_line(kw, {"prompt": "Once upon a time"})], tmp_path)
    [o] = llm.generate("Once upon a time", SamplingParams(logprobs=0, **kw), use_tqdm=False)
    compare(o, cli[0], kw)
    assert o.outputs[0].finish_reason == "stop" and o.outputs[0].stop_reason == "Lily"


@pytest.mark.parametrize("fixture", ["qwen3-tiny-f32-untied", "qwen3-tiny-f32-tied", "qwen3-tiny-bf16",
                                     "llama-tiny-f32"])
def test_fixture_token_prompts_equal_cli(binary, tmp_path, fixture):
    model = FIXTURES / fixture
    llm = LLM(str(model), device="cpu")
    prompts = [[1, 50, 300, 7, 1200], [9] * 40, list(range(3, 70, 3)), [1000]]
    requests, expected = [], []
    for i, kw in enumerate(cases()):
        for p in prompts[i % 3: i % 3 + 2]:
            requests.append(cli_line(kw, {"prompt_token_ids": p}))
            expected.append(({"prompt_token_ids": p}, kw))
    cli = run_cli(binary, model, requests, tmp_path)
    outs = llm.generate([p for p, _ in expected],
                        [SamplingParams(**{"logprobs": 0, **kw}) for _, kw in expected], use_tqdm=False)
    for o, c, (_, kw) in zip(outs, cli, expected):
        compare(o, c, kw)
