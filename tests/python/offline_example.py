# The offline example as batch-invariance guides show it for vLLM (an LLM, SamplingParams with a
# temperature and a seed, llm.generate on a list of prompts), kept as written: the test swaps only
# the import (vllm -> bitexact) and the model name before running it.
from vllm import LLM, SamplingParams

prompts = [
    "Hello, my name is",
    "The president of the United States is",
    "The capital of France is",
    "The future of AI is",
]
sampling_params = SamplingParams(temperature=0.8, top_p=0.95, seed=42)

llm = LLM(model="Qwen/Qwen3-8B")
outputs = llm.generate(prompts, sampling_params)

for output in outputs:
    prompt = output.prompt
    generated_text = output.outputs[0].text
    print(f"Prompt: {prompt!r}, Generated text: {generated_text!r}")
