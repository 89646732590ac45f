"""`VoyageQwen3BidirectionalEmbedModel` (voyageai/voyage-4-nano), which transformers has no class for.

How it maps to the original (vLLM's `VoyageQwen3BidirectionalEmbedModel` and the hub checkpoint):
- weights: a `Qwen3Model` under `model.` plus `linear.weight` [num_labels, hidden] (no bias), the same names
  as the checkpoint, so `from_pretrained` loads it unchanged;
- forward: Qwen3 decoder stack with BIDIRECTIONAL attention (the zoo recipe sets it; `DecoderEncoder` builds
  the mask), final RMSNorm, then `linear` on every token state; `last_hidden_state` is the projected states,
  as vLLM's forward returns them;
- pooling: mean over the attention mask (vLLM is run with `--pooler-config '{"pooling_type": "MEAN"}'`);
  mean commutes with the bias-free projection, so pooling before or after it gives the same vector.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Qwen3Config, Qwen3Model, Qwen3PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class VoyageQwen3BidirectionalEmbedModel(Qwen3PreTrainedModel):  # type: ignore[misc]
    config_class = Qwen3Config
    base_model_prefix = "model"

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__(config)
        self.model = Qwen3Model(config)
        self.linear = torch.nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        return BaseModelOutput(last_hidden_state=self.linear(out.last_hidden_state))
