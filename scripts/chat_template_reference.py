#!/usr/bin/env python3
"""Reference renderings for the C++ chat-template interpreter (src/tokenizer/jinja).

Generates seeded, varied conversations and renders each with transformers'
apply_chat_template(..., tokenize=False) on the tokenizers in shared/tokenizers, plus templates kept
in tests/data/chat and a corpus of small Jinja snippets. Writes DIR/templates.json ({name: source})
and DIR/cases.jsonl, one {template, inputs, expected | expected_error} per line, where inputs has
messages, tools, add_generation_prompt, extra, bos_token, eos_token (ChatTemplateInputs in C++).

Usage: python3 scripts/chat_template_reference.py --out build/chatref [--per-template 80] [--seed 1234]
Needs: pip install -r scripts/requirements-test.txt (transformers, no torch).
"""
import argparse
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "tokenizers")
DATA = os.path.join(ROOT, "tests", "data", "chat")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_template_snippets import SNIPPETS  # noqa: E402

TEXTS = [
    "Hello!", "Hi there, how are you?", "What is the capital of France?", "  padded with spaces  ",
    "line one\nline two\n\nline four", "\nleading newline", "trailing newline\n", "tabs\tand\\backslashes\\",
    "quotes: 'single' and \"double\"", "Ünïcödé façade — naïve café", "中文内容：你好，世界！", "emoji 🚀🔥👍🏽 mix",
    "עברית וערבית مرحبا", "json-ish {\"a\": [1, 2, {\"b\": null}]}", "a < b && c > d", "{{ not a template }} {% nope %}",
    "Short.", "Please summarise:\n- item 1\n- item 2\n- item 3", "Ends with question?", "Hi! Ends with bang!",
    "<|im_start|>fake special token<|im_end|>", "zero\u200bwidth and nbsp\u00a0here", "x" * 300,
]
THOUGHTS = ["Let me think step by step.", "\nThe user wants X.\nSo I answer Y.\n", "思考中……", "  spaced thought  "]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web — returns snippets (ünïcode)",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "max_results": {"type": "integer", "default": 5},
            "filters": {"type": "object", "properties": {"lang": {"type": "string"}, "safe": {"type": "boolean"}}}},
            "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"},
                                                        "precision": {"type": "number", "minimum": 0.5}}}}},
]
ARGS = [
    {"city": "Paris", "unit": "celsius"}, {"query": "最新消息", "max_results": 3, "filters": {"lang": "zh", "safe": True}},
    {"expression": "2 * (3 + 4)", "precision": 0.01}, {}, {"city": "São Paulo"},
    {"nested": {"list": [1, 2.5, None, False, "x\"y"]}},
]
RESULTS = ["22°C and sunny", '{"temperature": 22, "unit": "celsius"}', "14", "", "no results\nfor that query",
           "<tool_response>looks like a response</tool_response>"]


def tool_call(rng):
    args = rng.choice(ARGS)
    name = rng.choice(["get_weather", "search", "calculator"])
    arguments = json.dumps(args, ensure_ascii=rng.random() < 0.5) if rng.random() < 0.35 else args
    fn = {"name": name, "arguments": arguments}
    return {"type": "function", "id": f"call_{rng.randrange(1000)}", "function": fn} if rng.random() < 0.85 else fn


def assistant(rng, allow_tools, thinking, max_calls=3):
    msg = {"role": "assistant", "content": rng.choice(TEXTS)}
    r = rng.random()
    if thinking and r < 0.3:
        msg["reasoning_content"] = rng.choice(THOUGHTS)
    elif thinking and r < 0.4:
        msg[rng.choice(["thinking", "reasoning"])] = rng.choice(THOUGHTS)
    elif thinking and r < 0.55:
        msg["content"] = "<think>" + rng.choice(THOUGHTS) + "</think>" + rng.choice(["\n\n", "", "\n"]) + msg["content"]
    if allow_tools and rng.random() < 0.35:
        msg["tool_calls"] = [tool_call(rng) for _ in range(min(max_calls, rng.choice([1, 1, 1, 2, 3])))]
        if rng.random() < 0.3:
            msg["content"] = rng.choice(["", None])
    if rng.random() < 0.05:
        msg["reasoning_content"] = None  # dropped by apply_chat_template
    return msg


def conversation(rng, style, max_calls=3):
    """style: 'chat' (alternating), 'tools' (tool calls and responses), 'free' (anything)."""
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rng.choice(TEXTS)})
    turns = rng.randint(1, 4)
    for t in range(turns):
        user = {"role": "user", "content": rng.choice(TEXTS)}
        if style == "free" and rng.random() < 0.1:
            user["content"] = [{"type": "text", "text": rng.choice(TEXTS)}, {"type": "image"}]
        msgs.append(user)
        if t == turns - 1 and rng.random() < 0.5:
            break
        a = assistant(rng, style != "chat", True, max_calls)
        msgs.append(a)
        if "tool_calls" in a:
            for _ in range(len(a["tool_calls"]) if rng.random() < 0.8 else 1):
                content = rng.choice(RESULTS)
                msgs.append({"role": "tool", "content": content if rng.random() < 0.85 else {"result": content}})
            if rng.random() < 0.6:
                msgs.append(assistant(rng, False, True))
    if style in ("free", "chat") and rng.random() < 0.1:  # breaks role alternation
        msgs.insert(rng.randrange(len(msgs) + 1), {"role": "user" if rng.random() < 0.5 else "assistant", "content": rng.choice(TEXTS)})
    if style == "free" and rng.random() < 0.05:
        msgs.append({"role": "developer", "content": rng.choice(TEXTS), "name": "dev"})
    return msgs


def extra_kwargs(rng, name):
    extra = {}
    r = rng.random()
    if r < 0.3:
        extra["enable_thinking"] = False
    elif r < 0.5:
        extra["enable_thinking"] = True
    if name.startswith("llama3_2"):
        extra["date_string"] = rng.choice(["26 Jul 2024", "01 Jan 2025", "15 Mar 2026"])
        if rng.random() < 0.3:
            extra["tools_in_user_message"] = False
        if rng.random() < 0.15:
            extra["builtin_tools"] = ["brave_search", "wolfram_alpha", "code_interpreter"]
    return extra


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-template", type=int, default=80)
    ap.add_argument("--seed", type=int, default=1234)
    opts = ap.parse_args()

    import transformers
    from transformers import AutoTokenizer

    # name -> (tokenizer folder, template source or None for the tokenizer's own)
    def data(f):
        with open(os.path.join(DATA, f), encoding="utf-8") as fh:
            return fh.read()

    templates = {
        "qwen3": ("qwen3", None), "llama3": ("llama3", None),
        "llama2_chat": ("llama2", data("llama2_chat.jinja")),
        "llama3_2_tools": ("llama3", data("llama3_2_tools.jinja")),
        "features": ("qwen3", data("features.jinja")),
    }
    styles = {"qwen3": "tools", "llama3": "free", "llama2_chat": "chat", "llama3_2_tools": "tools", "features": "free"}
    toks = {d: AutoTokenizer.from_pretrained(os.path.join(SHARED, d)) for d in ("qwen3", "llama3", "llama2")}
    sources = {}
    os.makedirs(opts.out, exist_ok=True)
    counts = {}
    with open(os.path.join(opts.out, "cases.jsonl"), "w", encoding="utf-8") as out:
        def emit(name, tok, source, messages, tools, agp, kwargs):
            special = dict(tok.special_tokens_map)
            inputs = {"messages": messages, "tools": tools, "add_generation_prompt": agp,
                      "extra": {**{k: v for k, v in special.items() if k not in ("bos_token", "eos_token")}, **kwargs},
                      "bos_token": special.get("bos_token") or "", "eos_token": special.get("eos_token") or ""}
            case = {"template": name, "inputs": inputs}
            try:
                case["expected"] = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=agp,
                                                           tokenize=False, chat_template=source, **kwargs)
            except Exception as e:  # the C++ side must fail too
                case["expected_error"] = f"{type(e).__name__}: {e}"
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
            key = name + (" (error)" if "expected_error" in case else "")
            counts[key] = counts.get(key, 0) + 1

        for name, (folder, source) in templates.items():
            tok = toks[folder]
            sources[name] = source if source is not None else tok.chat_template
            rng = random.Random(f"{opts.seed}/{name}")
            for _ in range(opts.per_template):
                messages = conversation(rng, styles[name], 1 if name == "llama3_2_tools" and rng.random() < 0.8 else 3)
                tools = None
                if styles[name] != "chat" and rng.random() < 0.5:
                    tools = rng.sample(TOOLS, rng.randint(1, len(TOOLS)))
                emit(name, tok, source, messages, tools, rng.random() < 0.5, extra_kwargs(rng, name))

        dummy = [{"role": "user", "content": "hi"}]
        for i, (src, kwargs) in enumerate(SNIPPETS):
            name = f"snippet_{i:03d}"
            sources[name] = src
            emit(name, toks["qwen3"], src, dummy, None, False, kwargs)

    with open(os.path.join(opts.out, "templates.json"), "w", encoding="utf-8") as fh:
        json.dump(sources, fh, ensure_ascii=False, indent=1)
    with open(os.path.join(opts.out, "VERSION"), "w") as fh:
        fh.write(f"transformers {transformers.__version__}\n")
    for k in sorted(counts):
        if not k.startswith("snippet"):
            print(f"{k}: {counts[k]}")
    snip = sum(v for k, v in counts.items() if k.startswith("snippet"))
    print(f"snippets: {snip} ({sum(v for k, v in counts.items() if k.startswith('snippet') and 'error' in k)} errors)")


if __name__ == "__main__":
    main()
