"""LLM: vLLM's offline entry point over the bitexact engine.

    llm = LLM(model="path/to/model")
    outputs = llm.generate(["Hello"], SamplingParams(temperature=0.8, seed=1))

Prompts are strings, {"prompt": str}, {"prompt_token_ids": [...]} or lists of these; chat() renders
conversations with the model's chat template. The engine runs with the GIL released. Results are
batch-invariant: a prompt's tokens and logprobs do not depend on what else is in the batch.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional, Sequence, Union

from bitexact import _core
from bitexact.outputs import CompletionOutput, Logprob, RequestOutput
from bitexact.progress import make_bar
from bitexact.sampling_params import _SAMPLING_EPS, SamplingParams

PromptType = Union[str, dict, list]

# vLLM constructor arguments that do not change what bitexact computes.
_IGNORED_ARGS = {"trust_remote_code", "gpu_memory_utilization", "swap_space", "disable_log_stats",
                 "tokenizer_mode", "revision", "tokenizer_revision", "hf_token", "compilation_config"}


def _derive_seed(base: int, counter: int) -> int:
    """The seed of the counter-th unseeded request of an LLM(seed=base): splitmix64, 53 bits."""
    x = (base * 0x9E3779B97F4A7C15 + counter + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & ((1 << 53) - 1)


class Tokenizer:
    """The model's tokenizer (what LLM.get_tokenizer returns)."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._runner.encode(text, add_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._runner.decode(list(ids), skip_special_tokens)

    @property
    def eos_token_id(self) -> Optional[int]:
        ids = self._runner.eos_ids
        return ids[0] if ids else None


class LLM:
    """A model loaded for offline generation.

    model: a Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    device: "cpu", "cuda", or "auto" (CUDA when this build has it and a GPU is present).
    batch_invariant: False switches to faster batch-dependent kernels (results then depend on the
        batch; for measuring what the contract costs), as the CLI's --no-batch-invariant.
    load_format: "auto" or "dummy" (random weights of the config's shapes).
    enforce_eager: no CUDA graphs. seed: seeds requests that set none (None: fresh seeds, reported
        in CompletionOutput.seed).
    """

    def __init__(self, model: Union[str, os.PathLike], *, tokenizer: Optional[str] = None,
                 device: str = "auto", batch_invariant: bool = True, max_model_len: Optional[int] = None,
                 enforce_eager: bool = False, load_format: str = "auto", seed: Optional[int] = None,
                 max_num_seqs: int = 256, max_num_batched_tokens: int = 2048,
                 enable_prefix_caching: bool = True, kv_cache_memory_bytes: Optional[int] = None,
                 dtype: str = "auto", tensor_parallel_size: int = 1, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _IGNORED_ARGS)
        if unknown:
            raise TypeError(f"LLM() got unexpected arguments: {', '.join(unknown)}")
        model = os.fspath(model)
        if tokenizer is not None and os.path.abspath(os.fspath(tokenizer)) != os.path.abspath(model):
            raise ValueError("a tokenizer other than the model's is not supported by bitexact")
        if dtype != "auto":
            raise ValueError("dtype must be \"auto\": bitexact computes in the checkpoint's dtype")
        if tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size other than 1 is not supported by the Python API yet")
        self.model = model
        self.seed = seed
        self._runner = _core.Runner(
            model=model, device=device, batch_invariant=batch_invariant, max_model_len=max_model_len or 0,
            enforce_eager=enforce_eager, load_format=load_format, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, kv_cache_bytes=kv_cache_memory_bytes or 0,
            enable_prefix_caching=enable_prefix_caching)
        self._counter = 0  # request ids
        self._seed_counter = 0  # unseeded requests

    # ---- information ----------------------------------------------------------------------------

    @property
    def device(self) -> str:
        return self._runner.device

    @property
    def batch_invariant(self) -> bool:
        return self._runner.batch_invariant

    @property
    def max_model_len(self) -> int:
        return self._runner.max_model_len

    def get_tokenizer(self) -> Tokenizer:
        return Tokenizer(self._runner)

    def get_default_sampling_params(self) -> SamplingParams:
        """SamplingParams() with the model's generation_config.json sampling fields (vLLM's)."""
        return SamplingParams(**self._runner.generation_defaults)

    # ---- generation -----------------------------------------------------------------------------

    def generate(self, prompts: Union[PromptType, Sequence[PromptType]],
                 sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
                 use_tqdm: Union[bool, Callable[..., Any]] = True, lora_request: Any = None,
                 priority: Optional[list[int]] = None) -> list[RequestOutput]:
        """Completions of every prompt, in the order given."""
        if lora_request is not None:
            raise ValueError("LoRA is not supported by bitexact")
        parsed = [self._parse_prompt(p) for p in _as_prompt_list(prompts)]
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        if isinstance(sampling_params, SamplingParams):
            params = [sampling_params] * len(parsed)
        else:
            params = list(sampling_params)
            if len(params) != len(parsed):
                raise ValueError(f"{len(params)} sampling params for {len(parsed)} prompts: "
                                 "give one, or one per prompt")
        return self._run(parsed, params, use_tqdm)

    def chat(self, messages: Union[list[dict], list[list[dict]]],
             sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
             use_tqdm: Union[bool, Callable[..., Any]] = True, lora_request: Any = None,
             chat_template: Optional[str] = None, chat_template_content_format: str = "auto",
             add_generation_prompt: bool = True, continue_final_message: bool = False,
             tools: Optional[list[dict]] = None, chat_template_kwargs: Optional[dict[str, Any]] = None,
             mm_processor_kwargs: Optional[dict[str, Any]] = None) -> list[RequestOutput]:
        """Replies to one conversation (a list of messages) or to a list of conversations, each
        rendered with the model's chat template (or `chat_template`: its text or a file)."""
        if mm_processor_kwargs:
            raise ValueError("multimodal inputs are not supported by bitexact")
        if messages and isinstance(messages[0], dict):
            conversations = [messages]
        else:
            conversations = list(messages)
        if chat_template is None and not self._runner.has_chat_template:
            raise ValueError("this model has no chat template; pass chat_template= (its text or a file)")
        if chat_template is not None and os.path.isfile(chat_template):
            with open(chat_template, encoding="utf-8") as f:
                chat_template = f.read()
        prompts = []
        for conversation in conversations:
            body: dict[str, Any] = {"messages": list(conversation),
                                    "add_generation_prompt": add_generation_prompt,
                                    "continue_final_message": continue_final_message}
            if chat_template is not None:
                body["chat_template"] = chat_template
            if chat_template_kwargs:
                body["chat_template_kwargs"] = chat_template_kwargs
            if tools is not None:
                body["tools"] = tools
            text = self._runner.render_chat(json.dumps(body))
            # The template writes the special tokens itself, so none are added (as vLLM does).
            prompts.append({"prompt": text, "prompt_token_ids": self._runner.encode(text, False)})
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm, lora_request=lora_request)

    def update_weights(self, path: Union[str, os.PathLike]) -> None:
        """Swaps in the weights of a folder of safetensors with this model's tensor names, shapes and
        dtypes (config.json is not needed). Waits for a generate() running in another thread; the
        prefix cache is cleared. Raises ValueError (mismatch, corrupt file) or OSError (missing
        file), and then the old weights stay."""
        self._runner.update_weights(os.fspath(path))

    # ---- internals ------------------------------------------------------------------------------

    def _parse_prompt(self, prompt: PromptType) -> tuple[Optional[str], list[int]]:
        if isinstance(prompt, str):
            return prompt, self._runner.encode(prompt, True)
        if isinstance(prompt, dict):
            extra = set(prompt) - {"prompt", "prompt_token_ids"}
            if extra:
                raise ValueError(f"prompt fields not supported by bitexact: {', '.join(sorted(extra))}")
            if "prompt_token_ids" in prompt:
                return prompt.get("prompt"), [int(t) for t in prompt["prompt_token_ids"]]
            if "prompt" in prompt:
                return prompt["prompt"], self._runner.encode(prompt["prompt"], True)
            raise ValueError("a prompt dict needs `prompt` or `prompt_token_ids`")
        raise TypeError(f"a prompt must be a str or a dict, not {type(prompt).__name__}")

    def _request_seed(self, p: SamplingParams) -> Optional[int]:
        if p.seed is not None:
            return p.seed
        self._seed_counter += 1
        return None if self.seed is None else _derive_seed(self.seed, self._seed_counter)

    def _run(self, prompts: list[tuple[Optional[str], list[int]]], params: list[SamplingParams],
             use_tqdm: Union[bool, Callable[..., Any]]) -> list[RequestOutput]:
        requests = []
        for (_, ids), p in zip(prompts, params):
            max_tokens = p.max_tokens if p.max_tokens is not None else max(self.max_model_len - len(ids), 1)
            requests.append(_core.Request(
                prompt=ids, max_tokens=max_tokens, min_tokens=p.min_tokens, temperature=p.temperature,
                top_p=p.top_p, top_k=p.top_k, min_p=p.min_p, seed=self._request_seed(p),
                logprobs=-1 if p.logprobs is None else p.logprobs, ignore_eos=p.ignore_eos,
                stop_token_ids=p.stop_token_ids, presence_penalty=p.presence_penalty,
                frequency_penalty=p.frequency_penalty, repetition_penalty=p.repetition_penalty, n=p.n,
                stop=p.stop, prompt_logprobs=-1 if p.prompt_logprobs is None else p.prompt_logprobs,
                skip_special_tokens=p.skip_special_tokens))
        bar = make_bar(use_tqdm, len(requests), "Processed prompts")
        tick = None
        if bar is not None:
            def tick(finished: int) -> None:
                if finished > bar.n:
                    bar.update(finished - bar.n)
        try:
            results = self._runner.generate(requests, tick)
        finally:
            if bar is not None:
                bar.close()
        outputs = []
        for (text, ids), p, r in zip(prompts, params, results):
            outputs.append(self._output(str(self._counter_next()), text, ids, p, r))
        return outputs

    def _counter_next(self) -> int:
        self._counter += 1
        return self._counter

    def _output(self, request_id: str, prompt: Optional[str], ids: list[int], p: SamplingParams,
                r: Any) -> RequestOutput:
        greedy = p.temperature < _SAMPLING_EPS and p.presence_penalty == 0.0 and \
            p.frequency_penalty == 0.0 and p.repetition_penalty == 1.0
        texts = self._runner.has_tokenizer  # decoded_token is None without a tokenizer
        completions = []
        for s in r.samples:
            logprobs, cumulative = None, None
            if p.logprobs is not None:
                # The argmax has rank 1; past min_tokens nothing was banned, so greedy chose it.
                logprobs = [_logprob_dict(t, greedy and i >= p.min_tokens, texts) for i, t in enumerate(s.logprobs)]
                cumulative = 0.0
                for t in s.logprobs:
                    cumulative += t.chosen[1]
            completions.append(CompletionOutput(
                index=s.index, text=s.text if p.detokenize else "", token_ids=list(s.token_ids),
                cumulative_logprob=cumulative, logprobs=logprobs, finish_reason=s.finish_reason,
                stop_reason=_stop_reason(s, p), seed=s.seed))
        prompt_logprobs = None
        if r.prompt_logprobs is not None:
            prompt_logprobs = [None] + [_logprob_dict(t, False, texts) for t in r.prompt_logprobs[1:]]
        return RequestOutput(request_id=request_id, prompt=prompt, prompt_token_ids=ids,
                             prompt_logprobs=prompt_logprobs, outputs=completions, finished=True)


def _as_prompt_list(prompts: Any) -> list:
    """vLLM's batching rules: one prompt, a list of prompts, a list of token ids (one prompt) or a
    list of lists of token ids (several)."""
    if isinstance(prompts, (str, dict)):
        return [prompts]
    if isinstance(prompts, (list, tuple)):
        if prompts and all(isinstance(t, int) for t in prompts):
            return [{"prompt_token_ids": list(prompts)}]
        return [{"prompt_token_ids": list(p)} if isinstance(p, (list, tuple)) else p for p in prompts]
    raise TypeError(f"prompts must be a str, a dict or a list, not {type(prompts).__name__}")


def _logprob_dict(t: Any, argmax: bool, texts: bool) -> dict[int, Logprob]:
    """{token id: Logprob}: the chosen token first, then the top N in rank order."""
    token, logprob, text = t.chosen
    rank = next((i + 1 for i, (tid, _, _) in enumerate(t.top) if tid == token), 1 if argmax else None)
    out = {token: Logprob(logprob, rank, text if texts else None)}
    for i, (tid, lp, s) in enumerate(t.top):
        out.setdefault(tid, Logprob(lp, i + 1, s if texts else None))
    return out


def _stop_reason(s: Any, p: SamplingParams) -> Union[int, str, None]:
    """vLLM's stop_reason: the stop token id (int) or the stop string; None for EOS or length."""
    reason = s.stop_reason
    if reason is None:
        return None
    if s.token_ids and reason == str(s.token_ids[-1]) and s.token_ids[-1] in p.stop_token_ids:
        return s.token_ids[-1]
    return reason
