"""bitexact: offline inference whose tokens and logprobs are reproducible bit for bit.

The API mirrors vLLM's offline one, so `from vllm import LLM, SamplingParams` becomes
`from bitexact import LLM, SamplingParams`; `LLM.update_weights(path)` swaps in new weights
(an RL trainer's checkpoint) without a restart.
"""

from bitexact.llm import LLM
from bitexact.outputs import CompletionOutput, Logprob, RequestOutput
from bitexact.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob"]
__version__ = "0.1.0"
