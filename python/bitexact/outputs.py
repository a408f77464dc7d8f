"""Result objects with vLLM's names and fields: RequestOutput, CompletionOutput, Logprob.

`logprobs` is a list with one dict per generated token mapping token id -> Logprob (the sampled
token first, then the top N); `prompt_logprobs` is the same per prompt token, None first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass
class Logprob:
    """A token's log probability, its rank (1 = most likely) and its text."""

    logprob: float
    rank: Optional[int] = None
    decoded_token: Optional[str] = None


SampleLogprobs = list[dict[int, Logprob]]
PromptLogprobs = list[Optional[dict[int, Logprob]]]


@dataclass
class CompletionOutput:
    """One sample of a request. `seed` (not in vLLM) is the seed it was drawn with: the same
    request with that seed gives the same tokens and logprobs, bit for bit."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: Optional[float]
    logprobs: Optional[SampleLogprobs]
    finish_reason: Optional[str] = None
    stop_reason: Union[int, str, None] = None
    lora_request: None = None
    seed: Optional[int] = None

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """What one prompt produced: `outputs` holds its n samples."""

    request_id: str
    prompt: Optional[str]
    prompt_token_ids: list[int]
    prompt_logprobs: Optional[PromptLogprobs]
    outputs: list[CompletionOutput]
    finished: bool
    metrics: None = None
    lora_request: None = None
    encoder_prompt: None = None
    encoder_prompt_token_ids: None = None
    num_cached_tokens: Optional[int] = None
    kv_transfer_params: None = None
    multi_modal_placeholders: dict = field(default_factory=dict)
