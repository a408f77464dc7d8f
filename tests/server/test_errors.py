# Every error case returns the OpenAI error shape with the right status, and the server keeps
# answering afterwards (the `healthy` fixture sends a normal request after each test).
import threading
import time

import httpx
import openai
import pytest

from conftest import MODEL_NAME, ServerProcess

PROMPT = "Once upon a time"


def post(server, path, body=None, raw=None, headers=None):
    if raw is not None:
        return httpx.post(server.url + path, content=raw, headers=headers or {"Content-Type": "application/json"},
                          timeout=30)
    return httpx.post(server.url + path, json=body, headers=headers, timeout=30)


def check_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["code"] == status
    if param is not None:
        assert err["param"] == param, err
    return err


# Nesting past the server's depth limit, where it would be serialised (a message's extra field).
DEEP = (b'{"prompt": "x", "messages": [{"role": "user", "content": "hi", "x": ' + b"[" * 200000 +
        b"]" * 200000 + b"}]}")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"\"text\"", b"\xff\xfe", DEEP],
                         ids=["bad", "empty", "array", "string", "bytes", "deep"])
def test_malformed_body(server, healthy, raw):
    check_error(post(server, "/v1/completions", raw=raw), 400)
    check_error(post(server, "/v1/chat/completions", raw=raw), 400)


BAD_COMPLETIONS = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": [1, "a"]}, "prompt"),
    ({"prompt": [1, 99999]}, "prompt"),
    ({"prompt": [-1]}, "prompt"),
    ({"prompt": PROMPT, "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": PROMPT, "max_tokens": -3}, "max_tokens"),
    ({"prompt": PROMPT, "max_tokens": 10**12}, "max_tokens"),
    ({"prompt": PROMPT, "max_tokens": 7.7e35}, "max_tokens"),  # fuzz_request: UB in the float cast
    ({"prompt": PROMPT, "max_tokens": 2.5}, "max_tokens"),
    ({"prompt": PROMPT, "temperature": "hot"}, "temperature"),
    ({"prompt": PROMPT, "temperature": -1}, None),
    ({"prompt": PROMPT, "top_p": 0}, None),
    ({"prompt": PROMPT, "top_k": -5}, "top_k"),
    ({"prompt": PROMPT, "min_p": 2}, None),
    ({"prompt": PROMPT, "n": 0}, "n"),
    ({"prompt": PROMPT, "seed": -1}, "seed"),
    ({"prompt": PROMPT, "seed": "x"}, "seed"),
    ({"prompt": PROMPT, "logprobs": 21}, "logprobs"),
    ({"prompt": PROMPT, "logprobs": True}, "logprobs"),
    ({"prompt": PROMPT, "stop": 3}, "stop"),
    ({"prompt": PROMPT, "stop": [""]}, "stop"),
    ({"prompt": PROMPT, "presence_penalty": 2.5}, "presence_penalty"),
    ({"prompt": PROMPT, "presence_penalty": "high"}, "presence_penalty"),
    ({"prompt": PROMPT, "frequency_penalty": -3}, "frequency_penalty"),
    ({"prompt": PROMPT, "repetition_penalty": 0}, "repetition_penalty"),
    ({"prompt": PROMPT, "length_penalty": 0.5}, "length_penalty"),
    ({"prompt": PROMPT, "logit_bias": {"5": 10}}, "logit_bias"),
    ({"prompt": PROMPT, "best_of": 3}, "best_of"),
    ({"prompt": PROMPT, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": PROMPT, "stream": "yes"}, "stream"),
    ({"prompt": PROMPT, "min_tokens": 50, "max_tokens": 5}, "min_tokens"),
    ({"prompt": PROMPT, "max_tokens": 254}, "max_tokens"),  # prompt + 254 > max-model-len 256
    ({"prompt": [1] * 300}, None),  # the prompt alone is longer than max-model-len
    ({"prompt": PROMPT, "suffix": "x"}, "suffix"),
]


@pytest.mark.parametrize("body,param", BAD_COMPLETIONS)
def test_bad_completion_params(server, healthy, body, param):
    check_error(post(server, "/v1/completions", {"model": MODEL_NAME, **body}), 400, param)


BAD_CHAT = [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"content": "no role"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 99}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": 3}, "chat_template_kwargs"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template": "{% if %}"}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}, "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "presence_penalty": 3}, "presence_penalty"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": {"name": "f"}}, "tools"),
    ({"messages": [{"role": "user", "content": [{"type": ["text"], "text": "x"}]}]}, "messages"),  # fuzz_request
    ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": 1}}, "response_format"),
]


@pytest.mark.parametrize("body,param", BAD_CHAT)
def test_bad_chat_params(server, healthy, body, param):
    check_error(post(server, "/v1/chat/completions", {"model": MODEL_NAME, **body}), 400, param)


def test_neutral_penalties_are_accepted(client, healthy):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3, presence_penalty=0.0,
                                  frequency_penalty=0.0, extra_body={"repetition_penalty": 1.0})
    assert r.usage.completion_tokens == 3


def test_openai_client_errors(client, healthy):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt=PROMPT, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2, presence_penalty=2.5)
    assert "presence_penalty" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2, extra_body={"length_penalty": 2})
    assert "not supported" in e.value.message


def test_unknown_route_and_method(server, healthy):
    check_error(httpx.get(server.url + "/v1/nothing"), 404)
    check_error(post(server, "/v1/models", {}), 404)


def test_body_too_large(server, healthy):
    big = b'{"prompt": "' + b"a" * (9 << 20) + b'"}'
    check_error(post(server, "/v1/completions", raw=big), 413)


def test_tokenize_errors(server, healthy):
    check_error(post(server, "/tokenize", {}), 400)
    check_error(post(server, "/detokenize", {"tokens": [1, 10**6]}), 400)
    check_error(post(server, "/tokenize", {"model": "other", "prompt": "x"}), 404)
    msgs = [{"role": "user", "content": "x"}]
    check_error(post(server, "/tokenize", {"messages": msgs, "add_special_tokens": "yes"}), 400, "add_special_tokens")
    check_error(post(server, "/tokenize", {"prompt": "x", "return_token_strs": 1}), 400, "return_token_strs")


def test_api_key(binary):
    s = ServerProcess(binary, "--api-key", "sekret")
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client(api_key="wrong").completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2)
        check_error(httpx.get(s.url + "/v1/models"), 401)
        check_error(httpx.post(s.url + "/tokenize", json={"prompt": "x"}), 401)
        assert s.client(api_key="sekret").completions.create(model=MODEL_NAME, prompt=PROMPT,
                                                             max_tokens=2).usage.completion_tokens == 2
        assert httpx.get(s.url + "/health").status_code == 200  # probes need no key
        assert httpx.get(s.url + "/metrics").status_code == 200
    finally:
        assert s.stop() == 0
    # the key may come from the environment too
    s = ServerProcess(binary, env={"BITEXACT_API_KEY": "envkey"})
    try:
        check_error(httpx.get(s.url + "/v1/models"), 401)
        assert httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer envkey"}).status_code == 200
    finally:
        assert s.stop() == 0


def test_queue_full_and_graceful_shutdown(binary):
    # One sequence at a time, so that a request of two long prompts stays in flight a while.
    s = ServerProcess(binary, "--max-pending", "2", "--max-num-seqs", "1", "--shutdown-timeout", "30",
                      max_model_len=512)
    try:
        body = {"model": MODEL_NAME, "prompt": [PROMPT, PROMPT, PROMPT], "max_tokens": 4}
        check_error(httpx.post(s.url + "/v1/completions", json=body), 503)
        # Two long prompts fill the server; a request arriving while they run is refused.
        long = {"model": MODEL_NAME, "prompt": [PROMPT, PROMPT], "max_tokens": 500, "ignore_eos": True,
                "temperature": 0}
        results = []
        thread = threading.Thread(target=lambda: results.append(
            httpx.post(s.url + "/v1/completions", json=long, timeout=60)))
        thread.start()
        deadline = time.time() + 20
        while s.metrics().get("bitexact:num_requests_in_flight", 0) < 2 and time.time() < deadline:
            time.sleep(0.002)
        statuses = []
        with httpx.Client(timeout=30) as http:
            while thread.is_alive() and 503 not in statuses:
                r = http.post(s.url + "/v1/completions", json={"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 1})
                statuses.append(r.status_code)
                if r.status_code == 503:
                    check_error(r, 503)
        assert 503 in statuses, statuses
        # SIGTERM while it runs: it finishes within the grace period, then the server exits 0.
        code = s.stop()
        thread.join()
        assert code == 0, s.output()[-2000:]
        assert [r.status_code for r in results] == [200]
        assert results[0].json()["usage"]["completion_tokens"] == 1000
    finally:
        s.stop()
