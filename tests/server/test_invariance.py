# Online invariance (ARCHITECTURE.md I1-I3, I9): seeded requests give the same tokens and the same
# logprob floats, bit for bit, whether they run alone or among 32 concurrent requests arriving at
# random times, streaming or not. Floats travel as round-trippable JSON, so == compares bits.
import random
import threading

import httpx

from conftest import MODEL_NAME

WORDS = "the cat dog sun tree girl boy ran happy big little park ball red blue saw".split()


def request(url, body):
    r = httpx.post(url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    return c["token_ids"], c["logprobs"]["token_logprobs"], c["logprobs"]["top_logprobs"], c["text"]


def stream_request(url, body):
    import json
    ids_text, lps = "", []
    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for c in json.loads(line[6:])["choices"]:
                ids_text += c["text"]
                lps += c["logprobs"]["token_logprobs"]
    return lps, ids_text


def test_alone_vs_32_concurrent(server):
    rng = random.Random(7)
    probes = [{"model": MODEL_NAME, "prompt": "Once upon a time " + " ".join(rng.choices(WORDS, k=k)),
               "max_tokens": 40, "temperature": t, "seed": 1000 + i, "logprobs": 3, "ignore_eos": True}
              for i, (k, t) in enumerate([(1, 1.0), (5, 0.7), (12, 0.0), (20, 1.3)])]
    alone = [request(server.url, p) for p in probes]

    others = [{"model": MODEL_NAME, "prompt": " ".join(rng.choices(WORDS, k=rng.randint(1, 60))),
               "max_tokens": rng.randint(5, 80), "temperature": 1.0, "ignore_eos": True}
              for _ in range(28)]
    jobs = [("probe", i, p) for i, p in enumerate(probes)] + [("other", i, o) for i, o in enumerate(others)]
    rng.shuffle(jobs)
    together, streamed, others_ok = {}, {}, []

    def run(kind, i, body, delay):
        threading.Event().wait(delay)  # random arrival times: the batch changes under the probes
        if kind == "probe":
            together[i] = request(server.url, body)
            streamed[i] = stream_request(server.url, body)
        else:
            r = httpx.post(server.url + "/v1/completions", json=body, timeout=120)
            others_ok.append(r.status_code == 200)

    threads = [threading.Thread(target=run, args=(*j, rng.random() * 0.3)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert others_ok == [True] * len(others)
    for i in range(len(probes)):
        assert together[i][0] == alone[i][0], f"probe {i}: token ids differ"
        assert together[i][1] == alone[i][1], f"probe {i}: logprobs differ"
        assert together[i][2] == alone[i][2], f"probe {i}: top logprobs differ"
        assert together[i][3] == alone[i][3]
        assert streamed[i][0] == alone[i][1] and streamed[i][1] == alone[i][3], f"probe {i}: streaming differs"
