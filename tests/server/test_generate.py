# Completions and chat through the official openai client: greedy text, prompt forms, n and seeds,
# stop strings, logprobs in both formats, echo, streaming equal to non-streaming bit for bit.
import time

import httpx
import pytest

from conftest import MODEL_NAME

PROMPT = "Once upon a time"


def extra(obj, key):
    return (obj.model_extra or {}).get(key)


def test_health_and_models(server, client):
    assert httpx.get(server.url + "/health").status_code == 200
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL_NAME]
    assert extra(models[0], "max_model_len") == 256


def test_completion_greedy(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text.startswith(", there was a little girl named Lily")
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert isinstance(extra(r.choices[0], "seed"), int)


def test_prompt_forms(client):
    by_text = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0)
    ids = httpx.post(str(client.base_url).replace("/v1/", "") + "/tokenize",
                     json={"prompt": PROMPT}).json()["tokens"]
    by_ids = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    many = client.completions.create(model=MODEL_NAME, prompt=[PROMPT, "The dog"], max_tokens=6, temperature=0)
    assert [c.index for c in many.choices] == [0, 1]
    assert many.choices[0].text == by_text.choices[0].text
    lists = client.completions.create(model=MODEL_NAME, prompt=[ids, ids[:2]], max_tokens=6, temperature=0)
    assert lists.choices[0].text == by_text.choices[0].text and len(lists.choices) == 2


def test_n_and_seed_reproduce(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, n=3, seed=1234,
                                  logprobs=1, temperature=1.0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    again = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, n=3, seed=1234,
                                      logprobs=1, temperature=1.0)
    for a, b in zip(r.choices, again.choices):
        assert a.text == b.text and a.logprobs.token_logprobs == b.logprobs.token_logprobs


def test_unseeded_sample_reports_its_seed(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=1.0, logprobs=0)
    seed = extra(r.choices[0], "seed")
    replay = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=1.0,
                                       logprobs=0, seed=seed)
    assert replay.choices[0].text == r.choices[0].text
    assert replay.choices[0].logprobs.token_logprobs == r.choices[0].logprobs.token_logprobs


def test_stop_string(client):
    full = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=20, temperature=0).choices[0].text
    stop = "girl"
    assert stop in full
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=20, temperature=0, stop=[stop, "zzz"])
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    assert extra(r.choices[0], "stop_reason") == stop


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert "".join(lp.tokens).strip() == r.choices[0].text.strip()
    assert lp.text_offset == sorted(lp.text_offset)
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert 3 <= len(top) <= 4 and chosen <= 0
        assert chosen == max(top.values())  # greedy picks the most likely token


def test_echo(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, temperature=0, echo=True, logprobs=1)
    c = r.choices[0]
    assert c.text.startswith(PROMPT)
    n_prompt = r.usage.prompt_tokens
    assert len(c.logprobs.tokens) == n_prompt + 4
    assert c.logprobs.token_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in c.logprobs.token_logprobs[1:])


def test_ignore_eos_min_tokens(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=200, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 200 and r.choices[0].finish_reason == "length"
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=30, temperature=0.8, seed=3,
                                  extra_body={"min_tokens": 30, "top_k": 20, "min_p": 0.05}, top_p=0.9)
    assert r.usage.completion_tokens == 30


def test_chat(client, server):
    msgs = [{"role": "system", "content": "Tell a story."}, {"role": "user", "content": "Once upon a time"}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=10, temperature=0)
    assert r.object == "chat.completion"
    m = r.choices[0].message
    assert m.role == "assistant" and isinstance(m.content, str) and len(m.content) > 0
    assert r.usage.completion_tokens <= 10
    # max_completion_tokens is the newer name of max_tokens
    r2 = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_completion_tokens=10, temperature=0)
    assert r2.choices[0].message.content == m.content
    # the prompt is the template's rendering; chat_template_kwargs and tools reach the template
    base = {"messages": msgs, "add_generation_prompt": True}
    count = lambda body: httpx.post(server.url + "/tokenize", json=body).json()["count"]
    plain = count(base)
    assert count({**base, "chat_template_kwargs": {"enable_thinking": False}}) > plain
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert count({**base, "tools": tools}) > plain
    r3 = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=5, temperature=0, tools=tools,
                                        extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert r3.choices[0].finish_reason in ("length", "stop")


def test_chat_logprobs(client):
    msgs = [{"role": "user", "content": "Once upon a time"}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=6, temperature=0,
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for e in content:
        assert len(e.top_logprobs) == 2 and e.logprob == e.top_logprobs[0].logprob
        assert bytes(e.bytes).decode("utf-8") == e.token


def stream_completion(client, **kw):
    text, lps, usage, finish = "", [], None, None
    for chunk in client.completions.create(stream=True, **kw):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.text
            if c.logprobs:
                lps += c.logprobs.token_logprobs
            finish = c.finish_reason or finish
    return text, lps, usage, finish


def test_stream_equals_non_stream(client):
    kw = dict(model=MODEL_NAME, prompt=PROMPT, max_tokens=24, temperature=1.0, seed=99, logprobs=2)
    full = client.completions.create(**kw)
    text, lps, usage, finish = stream_completion(client, stream_options={"include_usage": True}, **kw)
    assert text == full.choices[0].text
    assert lps == full.choices[0].logprobs.token_logprobs  # floats compared exactly
    assert usage.completion_tokens == full.usage.completion_tokens and finish == full.choices[0].finish_reason


def test_chat_stream(client):
    kw = dict(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=12, temperature=0,
              logprobs=True)
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    lps = [e.logprob for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert text == full.choices[0].message.content
    assert lps == [e.logprob for e in full.choices[0].logprobs.content]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens and not chunks[-1].choices
    assert [c for c in chunks if c.choices and c.choices[0].finish_reason][0].choices[0].finish_reason == "length"


def test_raw_sse_format(server):
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_tokenize_detokenize(server):
    t = httpx.post(server.url + "/tokenize", json={"prompt": PROMPT, "return_token_strs": True}).json()
    assert t["count"] == len(t["tokens"]) == len(t["token_strs"]) and t["max_model_len"] == 256
    d = httpx.post(server.url + "/detokenize", json={"tokens": t["tokens"]}).json()
    assert d["prompt"].strip().endswith(PROMPT)


def test_metrics(server, client):
    client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3)
    text = httpx.get(server.url + "/metrics").text
    for name in ["bitexact:num_requests_running", "bitexact:num_requests_waiting", "bitexact:kv_cache_usage_perc",
                 "bitexact:prompt_tokens_total", "bitexact:generation_tokens_total",
                 "bitexact:time_to_first_token_seconds_bucket", "bitexact:inter_token_latency_seconds_bucket",
                 "bitexact:e2e_request_latency_seconds_count"]:
        assert name in text, name
    m = server.metrics()
    assert m["bitexact:generation_tokens_total"] >= 3 and m["bitexact:prompt_tokens_total"] > 0


def test_each_of_n_samples_replays_alone(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, n=3, temperature=1.0, logprobs=0)
    seeds = [extra(c, "seed") for c in r.choices]
    assert len(set(seeds)) == 3
    for c in r.choices:
        alone = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=1.0,
                                          logprobs=0, seed=extra(c, "seed")).choices[0]
        assert alone.text == c.text and alone.logprobs.token_logprobs == c.logprobs.token_logprobs


def test_disconnect_aborts_and_frees_kv(server):
    before = server.metrics()
    abort_key = f'bitexact:request_success_total{{model_name="{MODEL_NAME}",finished_reason="abort"}}'
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 250, "n": 16, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        for i, line in enumerate(r.iter_lines()):
            if i >= 4:
                break  # hang up mid-stream
    deadline = time.time() + 10
    while time.time() < deadline:
        m = server.metrics()
        if m["bitexact:num_requests_in_flight"] == 0 and m.get(abort_key, 0) > before.get(abort_key, 0):
            break
        time.sleep(0.05)
    assert m.get(abort_key, 0) == before.get(abort_key, 0) + 1
    assert m["bitexact:kv_blocks_free"] == m["bitexact:kv_blocks_total"] and m["bitexact:num_requests_running"] == 0
    # aborted early: far fewer than the 16 * 250 tokens asked for were generated
    assert m["bitexact:generation_tokens_total"] - before["bitexact:generation_tokens_total"] < 16 * 250


def test_non_streaming_disconnect_aborts_and_frees_kv(server):
    """A client that gives up on a non-streaming request (here: a read timeout, which closes the
    connection) aborts it: the engine stops generating for nobody and frees its KV blocks."""
    before = server.metrics()
    abort_key = f'bitexact:request_success_total{{model_name="{MODEL_NAME}",finished_reason="abort"}}'
    body = {"model": MODEL_NAME, "prompt": [PROMPT] * 4, "max_tokens": 250, "n": 64, "ignore_eos": True}
    started = time.time()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", json=body, timeout=httpx.Timeout(30, read=0.5))
    deadline = time.time() + 10
    while time.time() < deadline:
        m = server.metrics()
        if m["bitexact:num_requests_in_flight"] == 0:
            break
        time.sleep(0.05)
    noticed_after = time.time() - started
    assert m.get(abort_key, 0) == before.get(abort_key, 0) + 4  # one engine request per prompt
    assert m["bitexact:kv_blocks_free"] == m["bitexact:kv_blocks_total"] and m["bitexact:num_requests_running"] == 0
    # aborted early: far fewer than the 4 * 64 * 250 tokens asked for were generated
    assert m["bitexact:generation_tokens_total"] - before["bitexact:generation_tokens_total"] < 4 * 64 * 250 / 2
    assert noticed_after < 5, noticed_after


def test_tools_request_without_calls(client):
    """With `tools`, output that holds no <tool_call> block is plain content (the parser itself,
    and responses with calls, are tested in src/server/tests/tool_calls_test.cc: this model cannot
    write a call)."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    kw = dict(model=MODEL_NAME, messages=[{"role": "user", "content": "Once upon a time"}], max_tokens=12,
              temperature=0, tools=tools)
    r = client.chat.completions.create(**kw)
    m = r.choices[0].message
    assert not m.tool_calls and m.content and r.choices[0].finish_reason in ("length", "stop")
    chunks = list(client.chat.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == m.content
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


def test_penalties_change_greedy_output(client):
    """presence/frequency/repetition penalties reach the sampler: each changes a greedy continuation
    that repeats itself, and a penalised request gives the same answer twice and when streamed."""
    kw = dict(model=MODEL_NAME, prompt=PROMPT, max_tokens=60, temperature=0)
    plain = client.completions.create(**kw).choices[0].text
    for extra_kw in [{"presence_penalty": 1.5}, {"frequency_penalty": 1.0},
                     {"extra_body": {"repetition_penalty": 1.8}}]:
        a = client.completions.create(**kw, **extra_kw).choices[0].text
        b = client.completions.create(**kw, **extra_kw).choices[0].text
        assert a != plain, extra_kw
        assert a == b, extra_kw
        streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw, **extra_kw))
        assert streamed == a, extra_kw
