"""Renders chat `messages` into one text with the model's chat template (jinja2, sandboxed)."""

from __future__ import annotations

import functools
from typing import Any

from trt_embed.errors import InvalidRequest, MissingDependency


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise MissingDependency("jinja2", "server") from None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template)


def render_chat(messages: list[dict[str, Any]], template: str | None, special_tokens: dict[str, str]) -> str:
    """The text the model's template makes of `messages` (no generation prompt: we embed, not generate)."""
    if not template:
        raise InvalidRequest("this model has no chat template; send `input` instead of `messages`", "messages")
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InvalidRequest(f"messages[{n}] needs `role` and `content`", "messages")
    try:
        return str(_compile(template).render(messages=messages, add_generation_prompt=False, **special_tokens))
    except Exception as exc:
        raise InvalidRequest(f"the chat template failed on these messages: {exc}", "messages") from exc
