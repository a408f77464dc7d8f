# LLM.chat: conversations rendered with the model's chat template (or one given), tokenized without
# added special tokens, then generated like any prompt. Checked against Hugging Face transformers'
# apply_chat_template on the real Qwen3 tokenizer (a dummy-weight model carries it), and against
# generate() on the rendered prompt for stories260K with the server tests' template.
import json
import shutil
from pathlib import Path

import pytest

from bitexact import LLM, SamplingParams
from conftest import FIXTURES, REPO, STORIES, signature

QWEN_TOKENIZER = (REPO / ".." / "shared" / "tokenizers" / "qwen3").resolve()
TEMPLATE = REPO / "tests" / "server" / "chat_template.jinja"
CONVERSATION = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": [{"type": "text", "text": "Tell me a story"}]}]


@pytest.fixture(scope="module")
def qwen_chat_model(tmp_path_factory):
    """Tiny Qwen3 shapes with the real Qwen3 vocabulary, random weights (load_format="dummy")."""
    d = tmp_path_factory.mktemp("qwen3-chat")
    config = json.loads((FIXTURES / "qwen3-tiny-f32-tied" / "config.json").read_text())
    config["vocab_size"] = 151936
    (d / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(QWEN_TOKENIZER / name, d / name)
    return d


def test_chat_matches_transformers_template(qwen_chat_model):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(qwen_chat_model))
    llm = LLM(str(qwen_chat_model), device="cpu", load_format="dummy")
    params = SamplingParams(temperature=0.0, max_tokens=3)
    for kwargs in [{}, {"enable_thinking": False}]:
        [out] = llm.chat(CONVERSATION, params, use_tqdm=False, chat_template_kwargs=kwargs or None)
        messages = [dict(m, content=m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
                    for m in CONVERSATION]
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
        assert out.prompt == text
        assert out.prompt_token_ids == hf.encode(text, add_special_tokens=False)
        assert len(out.outputs[0].token_ids) == 3
    [no_gen] = llm.chat(CONVERSATION, params, use_tqdm=False, add_generation_prompt=False)
    assert no_gen.prompt == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def test_chat_equals_generate_on_the_rendered_prompt():
    llm = LLM(str(STORIES), device="cpu")
    params = SamplingParams(temperature=0.8, seed=4, max_tokens=16, logprobs=2)
    conversations = [CONVERSATION, [{"role": "user", "content": "Once upon a time"}]]
    outs = llm.chat(conversations, params, use_tqdm=False, chat_template=str(TEMPLATE),
                    chat_template_kwargs={"enable_thinking": False})
    assert len(outs) == 2
    assert outs[1].prompt == "user: Once upon a time\nassistant: (no thinking)"
    tok = llm.get_tokenizer()
    direct = llm.generate([{"prompt_token_ids": tok.encode(o.prompt, add_special_tokens=False)} for o in outs],
                          params, use_tqdm=False)
    assert signature(outs) == signature(direct)


def test_chat_errors_are_clear():
    llm = LLM(str(STORIES), device="cpu")
    with pytest.raises(ValueError, match="chat template"):
        llm.chat([{"role": "user", "content": "hi"}], use_tqdm=False)  # the GGUF has none
    with pytest.raises(ValueError, match="role"):
        llm.chat([{"content": "no role"}], use_tqdm=False, chat_template=str(TEMPLATE))
