"""Request fields that OpenAI's `/v1/embeddings` (with vLLM's extras) and vLLM's `/pooling` share, and their
translation into an `EmbedRequest`: chat options, truncation, encodings, and the fields the reference removed."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import ChatOptions, EmbedRequest
from trt_embed.server.registry import truncate_side

log = logging.getLogger("trt_embed.server")
_warned: set[str] = set()
IGNORED_HEADER = "x-ignored-fields"

WireEncoding = Literal["float", "base64", "bytes", "bytes_only"]
WireDtype = Literal["float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2"]


class Body(BaseModel):
    """A request body: fields we do not know are kept aside, logged once per field name and named back in the
    `x-ignored-fields` response header (a typo must not pass as a silent 200). `normalize` is refused in the
    reference's words."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "normalize" in data and "normalize" not in cls.model_fields:
            raise InvalidRequest("Parameter `normalize` was removed; use `use_activation` instead.", "normalize")
        return data

    def ignored(self) -> list[str]:
        """Unknown fields of this body (warned about once per name in the log)."""
        names = sorted(self.model_extra or {})
        for name in names:
            if name not in _warned and len(_warned) < 1024:
                _warned.add(name)
                log.warning("request field %r is not supported and was ignored", name)
        return names


def ignored_headers(body: Body) -> dict[str, str]:
    """The `x-ignored-fields` header naming a body's unknown fields (ASCII, bounded), or none."""
    names = ["".join(c if " " <= c <= "~" else "?" for c in n[:64]) for n in body.ignored()]
    return {IGNORED_HEADER: ", ".join(names)[:1024]} if names else {}


def usage(tokens: int) -> dict[str, Any]:
    """The reference's usage block (pooling produces no completion tokens)."""
    return {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0, "prompt_tokens_details": None}


def truncation(truncate_prompt_tokens: int | None, side: str | None, auto: bool) -> str:
    """Over-long inputs are refused (400) unless the request asks for truncation or the server auto-truncates."""
    if truncate_prompt_tokens is None and not auto:
        return "none"
    return truncate_side(side)


class ChatFields(Body):
    messages: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = False
    continue_final_message: bool = False
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _generation(self) -> ChatFields:
        self.chat_options().check()
        return self

    def check_template(self, trusted: bool) -> None:
        """A template sent with the request is code run here: only with --trust-request-chat-template."""
        if not trusted and (self.chat_template is not None or "chat_template" in (self.chat_template_kwargs or {})):
            raise InvalidRequest(
                "Chat template is passed with request, but --trust-request-chat-template is not set. "
                "Refused request with untrusted chat template.",
                "chat_template",
            )

    def chat_options(self, tools: list[dict[str, Any]] | None = None) -> ChatOptions:
        return ChatOptions(
            add_generation_prompt=self.add_generation_prompt,
            continue_final_message=self.continue_final_message,
            chat_template=self.chat_template,
            chat_template_kwargs=self.chat_template_kwargs,
            tools=tools,
        )


class EmbedOptions(ChatFields):
    model: str | None = None
    user: str | None = None
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: WireEncoding = "float"
    truncate_prompt_tokens: Annotated[int, Field(ge=-1)] | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool | None = None  # None: True for `input`, False for `messages` (the template adds them)
    embed_dtype: WireDtype = "float32"
    endianness: Literal["native", "little", "big"] = "native"
    use_activation: bool | None = None
    priority: StrictInt = 0

    def embed_request(
        self,
        inputs: list[str] | list[list[int]] | None,
        variant: str,
        *,
        auto_truncate: bool = False,
        task: Literal["embed", "token_embed", "sparse", "token_classify"] = "embed",
    ) -> EmbedRequest:
        """The runtime's request for these fields."""
        chat = self.messages is not None
        specials = self.add_special_tokens if self.add_special_tokens is not None else not chat
        return EmbedRequest(
            inputs=inputs,
            messages=self.messages,
            task=task,
            dimensions=self.dimensions,
            normalize=self.use_activation,
            encodings=("float",) if self.encoding_format.startswith("bytes") else (self.encoding_format,),  # type: ignore[arg-type]
            embed_dtype=self.embed_dtype,
            endianness=self.endianness,
            truncate=truncation(self.truncate_prompt_tokens, self.truncation_side, auto_truncate),  # type: ignore[arg-type]
            truncate_prompt_tokens=self.truncate_prompt_tokens,
            add_special_tokens=specials,
            priority=self.priority,
            variant=variant,
            chat=self.chat_options(),
        )
