"""SamplingParams with vLLM's fields and defaults. Checked in full by the engine when a request is
added (ValueError naming the field); options bitexact does not implement raise ValueError here
rather than being ignored."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional, Union

_SAMPLING_EPS = 1e-5  # below this temperature sampling is greedy (vLLM's constant)


@dataclass
class SamplingParams:
    n: int = 1
    best_of: Optional[int] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: Optional[int] = None
    stop: Union[None, str, list[str]] = None
    stop_token_ids: Optional[list[int]] = None
    bad_words: Optional[list[str]] = None
    ignore_eos: bool = False
    max_tokens: Optional[int] = 16
    min_tokens: int = 0
    logprobs: Optional[int] = None
    prompt_logprobs: Optional[int] = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logits_processors: Optional[list[Any]] = None
    truncate_prompt_tokens: Optional[int] = None
    logit_bias: Optional[dict[int, float]] = None
    allowed_token_ids: Optional[list[int]] = None
    extra_args: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        elif self.stop is None:
            self.stop = []
        else:
            self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids or [])
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of is not supported by bitexact (use n)")
        unsupported = {
            "bad_words": self.bad_words,
            "logits_processors": self.logits_processors,
            "truncate_prompt_tokens": self.truncate_prompt_tokens,
            "logit_bias": self.logit_bias,
            "allowed_token_ids": self.allowed_token_ids,
        }
        for name, value in unsupported.items():
            if value:
                raise ValueError(f"{name} is not supported by bitexact")
        if self.include_stop_str_in_output:
            raise ValueError("include_stop_str_in_output is not supported by bitexact")
        if not self.spaces_between_special_tokens:
            raise ValueError("spaces_between_special_tokens=False is not supported by bitexact")
        if self.temperature < _SAMPLING_EPS:
            # Greedy: the truncations cannot change the argmax (vLLM resets them too).
            self.top_p, self.top_k, self.min_p = 1.0, 0, 0.0

    @classmethod
    def from_optional(cls, **kwargs: Any) -> "SamplingParams":
        """Like the constructor, but None means "the default" (vLLM's helper)."""
        return cls(**{k: v for k, v in kwargs.items() if v is not None})

    def clone(self) -> "SamplingParams":
        return SamplingParams(**{f.name: getattr(self, f.name) for f in fields(self)})
