"""Renders chat `messages` into one text with the model's chat template (jinja2, sandboxed), with the reference's
chat options: a generation prompt, an open final message, a template per request and extra template variables."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from trt_embed.errors import InvalidRequest, MissingDependency
from trt_embed.runtime.types import ChatOptions

# Content parts a text-only model can read; anything else (an image, audio) is refused by name.
TEXT_PARTS = ("text", "input_text")
MEDIA_PARTS = (
    "image_url",
    "input_image",
    "image",
    "image_pil",
    "image_embeds",
    "audio_url",
    "input_audio",
    "video_url",
)


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise MissingDependency("jinja2", "server") from None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        return env.from_string(template)
    except Exception as exc:  # a template sent with the request may not even parse
        raise InvalidRequest(f"the chat template does not parse: {exc}", "chat_template") from exc


def flatten_content(content: Any, n: int) -> str:
    """OpenAI message content as text: a string as is, a list of content parts joined by newlines (text parts
    only; an image or audio part is refused, since this model reads text)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{n}].content must be a string or a list of content parts", "messages")
    texts = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in MEDIA_PARTS:
            raise InvalidRequest(
                f"messages[{n}].content[{k}] is a {kind!r} part, but this model embeds text only; "
                f"send parts of type {' or '.join(TEXT_PARTS)}",
                "messages",
            )
        else:
            raise InvalidRequest(
                f"messages[{n}].content[{k}] must be a content part with type 'text' and a string `text`",
                "messages",
            )
    return "\n".join(texts)


def plain_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages checked (each a mapping with `role`) and their content flattened to text."""
    out = []
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise InvalidRequest(f"messages[{n}] needs `role` and `content`", "messages")
        item = dict(message)
        item["content"] = "" if message["content"] is None else flatten_content(message["content"], n)
        out.append(item)
    return out


def render_chat(
    messages: list[dict[str, Any]],
    template: str | None,
    special_tokens: dict[str, str],
    options: ChatOptions | None = None,
) -> str:
    """The text the template makes of `messages`, with the options' generation prompt or open final message."""
    options = options or ChatOptions()
    options.check()
    template = options.chat_template or template
    if not template:
        raise InvalidRequest(
            "this model has no chat template; send `input` instead of `messages`, or pass `chat_template`",
            "messages",
        )
    plain = plain_messages(messages)
    if options.continue_final_message and not plain:
        raise InvalidRequest("continue_final_message needs a final message to continue", "messages")
    extra = dict(options.chat_template_kwargs or {})
    variables = {
        **special_tokens,
        **extra,
        "messages": plain,
        "add_generation_prompt": options.add_generation_prompt,
        "tools": list(options.tools) if options.tools is not None else extra.get("tools"),
    }
    compiled = _compile(template)
    try:
        text = str(compiled.render(**variables))
    except Exception as exc:
        raise InvalidRequest(f"the chat template failed on these messages: {exc}", "messages") from exc
    if options.continue_final_message:
        text = _open_final(text, plain[-1]["content"])
    return text


def _open_final(text: str, final: str) -> str:
    """Cut what the template wrote after the final message (its end-of-turn tokens), as transformers does for
    `continue_final_message`, so the text ends inside that message."""
    final = final.strip()
    end = text.rfind(final) if final else -1
    if end < 0:
        raise InvalidRequest(
            "continue_final_message: the chat template does not write the final message's text verbatim", "messages"
        )
    return text[: end + len(final)]
