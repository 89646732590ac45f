"""Chat rendering against transformers' own `apply_chat_template`: generation prompt, open final message,
content-part lists, a template per request, extra template variables and tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import ChatOptions
from trt_embed.runtime.text.chat import render_chat

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}"
    "{% if greeting is defined %}{{ greeting }}\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You embed."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is"},
]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    tok.chat_template = CHATML
    return tok


@pytest.mark.parametrize(
    "options",
    [
        ChatOptions(),
        ChatOptions(add_generation_prompt=True),
        ChatOptions(continue_final_message=True),
        ChatOptions(chat_template_kwargs={"greeting": "hello"}),
        ChatOptions(tools=TOOLS, add_generation_prompt=True),
    ],
    ids=["plain", "generation", "continue", "kwargs", "tools"],
)
def test_render_matches_transformers(hf_tokenizer: Any, options: ChatOptions) -> None:
    expected = hf_tokenizer.apply_chat_template(
        MESSAGES,
        tokenize=False,
        add_generation_prompt=options.add_generation_prompt,
        continue_final_message=options.continue_final_message,
        tools=options.tools,
        **dict(options.chat_template_kwargs or {}),
    )
    assert render_chat(MESSAGES, CHATML, {}, options) == expected


def test_content_parts_flatten_like_text(hf_tokenizer: Any) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]}]
    expected = hf_tokenizer.apply_chat_template([{"role": "user", "content": "first part\nsecond"}], tokenize=False)
    assert render_chat(parts, CHATML, {}) == expected
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    with pytest.raises(InvalidRequest, match=r"'image_url' part, but this model embeds text only"):
        render_chat(image, CHATML, {})


def test_template_per_request_and_errors() -> None:
    options = ChatOptions(chat_template="{% for m in messages %}[{{ m.content }}]{% endfor %}")
    assert render_chat(MESSAGES[:2], None, {}, options) == "[You embed.][What is the capital of France?]"
    with pytest.raises(InvalidRequest, match="no chat template"):
        render_chat(MESSAGES, None, {})
    with pytest.raises(InvalidRequest, match=r"Cannot set both `continue_final_message` and `add_generation_prompt`"):
        render_chat(MESSAGES, CHATML, {}, ChatOptions(add_generation_prompt=True, continue_final_message=True))
    with pytest.raises(InvalidRequest, match="does not parse"):
        render_chat(MESSAGES, None, {}, ChatOptions(chat_template="{% for %}"))
