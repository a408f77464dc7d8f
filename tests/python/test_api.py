# The vLLM-shaped surface of the package: SamplingParams defaults, prompt forms (text, dicts, token
# ids, batches, one SamplingParams per prompt), output fields (n samples, stop reasons, logprob
# dicts, cumulative logprob, prompt logprobs), seeds from LLM(seed=...), argument errors, and the
# progress bar with and without tqdm.
import sys

import pytest

import bitexact
from bitexact import LLM, CompletionOutput, Logprob, RequestOutput, SamplingParams
from conftest import QWEN, STORIES, signature


@pytest.fixture(scope="module")
def stories():
    return LLM(str(STORIES), device="cpu")


def test_sampling_params_defaults_are_vllms():
    p = SamplingParams()
    assert (p.n, p.temperature, p.top_p, p.top_k, p.min_p, p.seed, p.max_tokens, p.min_tokens) == \
        (1, 1.0, 1.0, 0, 0.0, None, 16, 0)
    assert (p.stop, p.stop_token_ids, p.ignore_eos, p.logprobs, p.prompt_logprobs, p.skip_special_tokens) == \
        ([], [], False, None, None, True)
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) == (0.0, 0.0, 1.0)
    assert SamplingParams(stop="x").stop == ["x"]
    assert SamplingParams(temperature=0, top_k=5, top_p=0.5).top_k == 0  # greedy ignores truncation
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={1: 2.0})
    assert bitexact.__all__ == ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob"]


def test_output_fields(stories):
    [o] = stories.generate("Once upon a time", SamplingParams(temperature=0.8, seed=3, n=2, max_tokens=8,
                                                                logprobs=2, prompt_logprobs=1), use_tqdm=False)
    assert isinstance(o, RequestOutput) and o.finished and o.prompt == "Once upon a time"
    assert o.prompt_token_ids == stories.get_tokenizer().encode("Once upon a time")
    assert [c.index for c in o.outputs] == [0, 1]
    c = o.outputs[0]
    assert isinstance(c, CompletionOutput) and c.finished() and c.finish_reason == "length"
    assert c.seed == 3 and o.outputs[1].seed != 3
    assert len(c.logprobs) == len(c.token_ids) == 8
    for tok, d in zip(c.token_ids, c.logprobs):
        assert next(iter(d)) == tok  # the sampled token first
        assert all(isinstance(v, Logprob) and v.logprob <= 0 for v in d.values())
        assert {v.rank for t, v in d.items() if t != tok} <= {1, 2}
        assert d[tok].decoded_token == stories.get_tokenizer().decode([tok], skip_special_tokens=False)
    assert c.cumulative_logprob == sum(d[t].logprob for t, d in zip(c.token_ids, c.logprobs))
    assert o.prompt_logprobs[0] is None and len(o.prompt_logprobs) == len(o.prompt_token_ids)
    for tok, d in zip(o.prompt_token_ids[1:], o.prompt_logprobs[1:]):
        assert tok in d and len(d) <= 2
    [plain] = stories.generate("Once upon a time", SamplingParams(max_tokens=4, seed=1), use_tqdm=False)
    assert plain.outputs[0].logprobs is None and plain.outputs[0].cumulative_logprob is None


def test_prompt_forms_give_the_same_results(stories):
    ids = stories.get_tokenizer().encode("The little dog")
    p = SamplingParams(temperature=0.0, max_tokens=6, logprobs=0)
    forms = ["The little dog", {"prompt": "The little dog"}, {"prompt_token_ids": ids}, ids]
    sigs = [signature(stories.generate(f, p, use_tqdm=False)) for f in forms]
    assert all(s == sigs[0] for s in sigs)
    batch = stories.generate([ids, "Once upon a time"], [p, SamplingParams(max_tokens=3, seed=2)], use_tqdm=False)
    assert signature(batch[:1]) == sigs[0] and len(batch[1].outputs[0].token_ids) == 3
    assert stories.generate([], p, use_tqdm=False) == []


def test_stop_reasons(stories):
    [greedy] = stories.generate("Once upon a time", SamplingParams(temperature=0, max_tokens=12), use_tqdm=False)
    stop_id = greedy.outputs[0].token_ids[3]
    [o] = stories.generate("Once upon a time", SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop_id]),
                           use_tqdm=False)
    c = o.outputs[0]
    assert c.finish_reason == "stop" and c.stop_reason == stop_id and c.token_ids[-1] == stop_id
    [s] = stories.generate("Once upon a time", SamplingParams(temperature=0, max_tokens=30, stop=" girl"),
                           use_tqdm=False)
    assert s.outputs[0].stop_reason == " girl" and " girl" not in s.outputs[0].text


def test_llm_seed_makes_unseeded_requests_reproducible():
    p = SamplingParams(temperature=1.0, max_tokens=8, logprobs=0)
    a = LLM(str(STORIES), device="cpu", seed=7).generate(["A", "B"], p, use_tqdm=False)
    b = LLM(str(STORIES), device="cpu", seed=7).generate(["A", "B"], p, use_tqdm=False)
    assert signature(a) == signature(b) and a[0].outputs[0].seed != a[1].outputs[0].seed
    # Unseeded without LLM(seed): fresh seeds, reported, and each reproduces its sample.
    [fresh] = LLM(str(STORIES), device="cpu").generate("A", p, use_tqdm=False)
    again = LLM(str(STORIES), device="cpu").generate(
        "A", SamplingParams(temperature=1.0, max_tokens=8, logprobs=0, seed=fresh.outputs[0].seed), use_tqdm=False)
    assert signature([fresh]) == signature(again)


def test_errors_are_clear(stories):
    with pytest.raises(ValueError, match="2 sampling params for 1 prompts"):
        stories.generate("A", [SamplingParams(), SamplingParams()], use_tqdm=False)
    with pytest.raises(ValueError, match="top_p"):
        stories.generate("A", SamplingParams(top_p=2.0), use_tqdm=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        stories.generate({"prompt_token_ids": [1, 999999]}, use_tqdm=False)
    with pytest.raises(TypeError, match="unexpected arguments: bogus"):
        LLM(str(STORIES), bogus=1)
    with pytest.raises(OSError, match="does not exist"):
        LLM("/nonexistent/model")
    with pytest.raises(ValueError, match="no tokenizer"):
        LLM(str(QWEN), device="cpu").generate("text needs a tokenizer", use_tqdm=False)
    # The engine is still usable after refusing those.
    assert stories.generate("A", SamplingParams(max_tokens=2, seed=1), use_tqdm=False)[0].finished


def test_progress_bar_with_and_without_tqdm(stories, capsys, monkeypatch):
    stories.generate(["A", "B", "C"], SamplingParams(max_tokens=3, seed=1), use_tqdm=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    stories.generate(["A", "B", "C"], SamplingParams(max_tokens=3, seed=1))
    err = capsys.readouterr().err
    assert "Processed prompts" in err and "3/3" in err


def test_device_and_switches(stories):
    assert stories.device == "cpu" and stories.batch_invariant
    llm = LLM(str(QWEN), device="auto", max_model_len=64, enforce_eager=True)
    assert llm.device in ("cpu", "cuda") and llm.max_model_len == 64
    with pytest.raises(ValueError, match="prompt has 64 tokens"):
        llm.generate({"prompt_token_ids": [5] * 64}, use_tqdm=False)
    dummy = LLM(str(QWEN), device="cpu", load_format="dummy")
    assert dummy.generate([[5, 6, 7]], SamplingParams(max_tokens=2, seed=0), use_tqdm=False)[0].finished
