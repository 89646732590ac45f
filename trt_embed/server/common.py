"""Request fields that OpenAI's `/v1/embeddings` (with vLLM's extras) and vLLM's `/pooling` share, and their
translation into an `EmbedRequest`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from trt_embed.runtime import EmbedRequest
from trt_embed.server.registry import truncate_side


class EmbedOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    truncate_prompt_tokens: int | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool = True
    embed_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    endianness: Literal["native", "little", "big"] = "little"
    use_activation: bool | None = None
    normalize: bool | None = None
    priority: StrictInt = 0

    def embed_request(
        self,
        inputs: list[str] | list[list[int]] | None,
        variant: str,
        *,
        messages: list[dict[str, Any]] | None = None,
        task: Literal["embed", "token_embed", "sparse", "token_classify"] = "embed",
    ) -> EmbedRequest:
        """The runtime's request for these fields (`use_activation` wins over the older `normalize`)."""
        return EmbedRequest(
            inputs=inputs,
            messages=messages,
            task=task,
            dimensions=self.dimensions,
            normalize=self.use_activation if self.use_activation is not None else self.normalize,
            encodings=(self.encoding_format,),
            embed_dtype=self.embed_dtype,
            endianness=self.endianness,
            truncate=truncate_side(self.truncation_side),  # type: ignore[arg-type]
            truncate_prompt_tokens=self.truncate_prompt_tokens,
            add_special_tokens=self.add_special_tokens,
            priority=self.priority,
            variant=variant,
        )
