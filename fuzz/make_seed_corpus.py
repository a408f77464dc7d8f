#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus: a few small valid inputs per target, byte-exact and
deterministic, into fuzz/corpus/<target>/. Run it again after changing the formats it covers."""
import json
import os
import struct
import sys


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: (key, type, packed value bytes); tensors: (name, ne list, ggml type, data bytes)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gguf_str(key) + struct.pack("<I", t) + v
    data = b""
    for name, ne, t, raw in tensors:
        data += b"\0" * (-len(data) % alignment)
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", t, len(data))
        data += raw
    out += b"\0" * (-len(out) % alignment)
    return out + data


def u32(k, v): return (k, 4, struct.pack("<I", v))
def f32(k, v): return (k, 6, struct.pack("<f", v))
def string(k, v): return (k, 8, gguf_str(v))
def str_array(k, vs): return (k, 9, struct.pack("<IQ", 8, len(vs)) + b"".join(gguf_str(v) for v in vs))
def f32_array(k, vs): return (k, 9, struct.pack("<IQ", 6, len(vs)) + b"".join(struct.pack("<f", v) for v in vs))
def i32_array(k, vs): return (k, 9, struct.pack("<IQ", 5, len(vs)) + b"".join(struct.pack("<i", v) for v in vs))
def floats(n): return b"".join(struct.pack("<f", i * 0.5) for i in range(n))


def gguf_model(arch, vocab=4, hidden=4, extra=()):
    kvs = [string("general.architecture", arch), u32(arch + ".embedding_length", hidden),
           u32(arch + ".block_count", 1), u32(arch + ".feed_forward_length", 8),
           u32(arch + ".attention.head_count", 2), u32(arch + ".attention.head_count_kv", 1),
           u32(arch + ".context_length", 32), f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5),
           str_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "a"][:vocab]),
           f32_array("tokenizer.ggml.scores", [0.0] * vocab), i32_array("tokenizer.ggml.token_type", [2, 3, 3, 1][:vocab]),
           u32("tokenizer.ggml.bos_token_id", 1), u32("tokenizer.ggml.eos_token_id", 2), *extra]
    tensors = [("token_embd.weight", [hidden, vocab], 0, floats(hidden * vocab)),
               ("output_norm.weight", [hidden], 1, b"\0\x3c" * hidden),
               ("blk.0.attn_q.weight", [hidden, hidden], 30, b"\x80\x3f" * hidden * hidden)]
    return gguf(kvs, tensors)


QWEN3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
         "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
         "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-6,
         "rope_theta": 1000000, "rope_scaling": None, "tie_word_embeddings": True,
         "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
         "max_position_embeddings": 40960, "use_sliding_window": False, "hidden_act": "silu"}
MOE = dict(QWEN3, model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2,
           moe_intermediate_size=64, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0])
LLAMA = {"architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 2048,
         "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
         "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "dtype": "bfloat16",
         "eos_token_id": [128001, 128008, 128009], "bos_token_id": 128000,
         "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}}
GENERATION = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "temperature": 0.6,
              "top_k": 20, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.1}

# Request bodies for fuzz_request: every prompt form, chat with tools / tool history / thinking,
# and the sampling, stopping, logprob and streaming fields (all valid for the fuzzer's models).
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}}, "required": ["city"]}}}]
REQUESTS = {
    "completion_text.json": {"model": "m", "prompt": "Once upon a time", "max_tokens": 16,
                             "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "seed": 7},
    "completion_list.json": {"prompt": ["The dog", "A cat"], "n": 2, "max_tokens": 8, "stop": ["\n", "."],
                             "logprobs": 3, "echo": True},
    "completion_ids.json": {"prompt": [1, 2, 3, 4], "max_tokens": 4, "stop_token_ids": [2],
                            "ignore_eos": True, "min_tokens": 2},
    "completion_id_lists.json": {"prompt": [[1, 2], [3, 4, 5]], "max_tokens": 3, "best_of": 1},
    "completion_stream.json": {"prompt": "Hi", "stream": True, "stream_options": {"include_usage": True},
                               "max_tokens": 5, "presence_penalty": 0.5, "frequency_penalty": 0.2,
                               "repetition_penalty": 1.1, "skip_special_tokens": False},
    "chat_simple.json": {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                                    {"role": "user", "content": "Hello"}],
                         "max_completion_tokens": 16, "logprobs": True, "top_logprobs": 2},
    "chat_tools.json": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS,
                        "tool_choice": "auto", "chat_template_kwargs": {"enable_thinking": False},
                        "max_tokens": 32},
    "chat_tool_history.json": {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
        {"role": "assistant", "content": "<think>ok</think>It is 22 C."},
        {"role": "user", "content": [{"type": "text", "text": "And"}, {"type": "text", "text": "Rome?"}]}],
        "tools": TOOLS, "stream": True, "n": 2, "seed": 1, "stop": "."},
    "chat_template_override.json": {"messages": [{"role": "user", "content": "x"}],
                                    "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n"
                                                     "{% endfor %}{% if add_generation_prompt %}a:{% endif %}",
                                    "add_generation_prompt": True, "response_format": {"type": "text"}},
}

SEEDS = {
    "fuzz_safetensors": {
        "two_tensors.safetensors": safetensors(
            [("a", "F32", [2, 3], floats(6)), ("b", "BF16", [4], b"\x80\x3f" * 4)], {"format": "pt"}),
        "mixed.safetensors": safetensors(
            [("s", "F32", [], floats(1)), ("h", "F16", [2, 2], b"\0\x3c" * 4),
             ("i", "I32", [3], struct.pack("<3i", 1, 2, 3)), ("z", "F32", [0, 5], b"")]),
        "empty.safetensors": safetensors([]),
    },
    "fuzz_gguf": {
        "llama.gguf": gguf_model("llama"),
        "qwen3.gguf": gguf_model("qwen3", extra=[u32("qwen3.attention.key_length", 2),
                                                 f32("qwen3.rope.freq_base", 1e6)]),
        "v2_meta_only.gguf": gguf([u32("general.alignment", 64), string("general.name", "x"),
                                   ("flag", 7, b"\1"), ("nested", 9, struct.pack("<IQ", 9, 1) +
                                                        struct.pack("<IQ", 11, 1) + struct.pack("<q", -5))],
                                  [], version=2),
    },
    "fuzz_config": {
        "qwen3.json": json.dumps(QWEN3, indent=1).encode(),
        "qwen3_moe.json": json.dumps(MOE).encode(),
        "llama3.json": json.dumps(LLAMA).encode(),
        "generation_config.json": json.dumps(GENERATION).encode(),
    },
    "fuzz_request": {name: json.dumps(body).encode() for name, body in REQUESTS.items()},
}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, files in SEEDS.items():
        os.makedirs(os.path.join(root, target), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(root, target, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
