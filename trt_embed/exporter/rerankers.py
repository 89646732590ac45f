"""Graphs for rerankers and sequence classifiers (issue 30, phase 1; not yet registered in export.py).

- `ClassifierGraph`: any transformers *ForSequenceClassification (BERT, (XLM-)RoBERTa, ModernBERT, DeBERTa-v2,
  ELECTRA) as input_ids/attention_mask(/token_type_ids) -> `logits` [B, num_labels], the head in the graph.
- `LlmRerankerGraph`: a causal LM's decoder plus only the LM-head rows of the scoring tokens (two for Qwen3-Reranker's
  "no"/"yes", one for bge-reranker-v2-gemma's "Yes"), applied at the last position of left-padded prompts ->
  `logits` [B, k]; the artifact stays the size of the decoder alone.
- `scoring_tokens`: vLLM's hf_overrides names (`classifier_from_token`, `is_original_qwen3_reranker`) as options,
  else detection from the architecture; the runtime scores with trt_embed.runtime.outputs.pair_scores.
"""

from __future__ import annotations

from typing import Any

import torch

from trt_embed.errors import ExportError

_CARD_TOKENS = {"Qwen3ForCausalLM": ["no", "yes"], "GemmaForCausalLM": ["Yes"], "Gemma2ForCausalLM": ["Yes"]}


def scoring_tokens(config: Any, options: dict[str, Any]) -> list[str]:
    """The vocabulary tokens whose logits the graph outputs, from vLLM's override names or the architecture."""
    if options.get("classifier_from_token"):
        return [str(t) for t in options["classifier_from_token"]]
    if options.get("is_original_qwen3_reranker"):
        return ["no", "yes"]
    for architecture in getattr(config, "architectures", None) or []:
        if architecture in _CARD_TOKENS:
            return _CARD_TOKENS[architecture]
    raise ExportError("cannot tell which tokens score this causal LM: pass classifier_from_token (e.g. no,yes)")


class ClassifierGraph(torch.nn.Module):
    """A *ForSequenceClassification model as a graph with a single `logits` output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *types: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": types[0]} if types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


class LlmRerankerGraph(torch.nn.Module):
    """Decoder + the selected LM-head rows at the last position of left-padded prompts -> `logits` [B, k]."""

    def __init__(self, causal_lm: torch.nn.Module, token_ids: list[int]) -> None:
        super().__init__()
        self.decoder = causal_lm.get_decoder()
        weight = causal_lm.get_output_embeddings().weight.detach()[token_ids].clone()
        self.rows = torch.nn.Linear(weight.shape[1], len(token_ids), bias=False)
        self.rows.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.soft_cap = getattr(causal_lm.config, "final_logit_softcapping", None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, -1, :]
        logits = self.rows(hidden)
        if self.soft_cap:
            logits = torch.tanh(logits / self.soft_cap) * self.soft_cap
        return logits
