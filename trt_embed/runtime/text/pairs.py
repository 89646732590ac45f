"""Pair tokenization for cross-encoders and prompt formatting for LLM rerankers (`tokenizers` only).

Design note for phase 2 (the cross-encoder / classify routes of issue 30):
- A cross-encoder Route builds one `PairTokenizer` from the artifact's tokenizer.json with the manifest's max_length
  and truncation side ("longest_first" as sentence-transformers' CrossEncoder, or "only_second"). Per request it
  calls `encode_pairs(pairs)`, which returns the padded arrays (input_ids, attention_mask, token_type_ids) the graph
  takes; batch them through the engine pool as embed routes batch texts; the graph outputs `logits` [B, num_labels].
- It then calls `trt_embed.runtime.outputs.pair_scores.scores(logits, activation)` with the manifest's activation
  ("sigmoid" | "softmax" | "identity") to get CrossEncoder.predict's numbers; /classify uses `label_probabilities`.
- An LLM reranker Route formats each (query, document) with `qwen3_reranker_text` / `gemma_reranker_parts`,
  tokenizes with `encode_prompts` (no post-processor: the template carries every special token; left padding
  like the cards), runs the graph (which outputs only the needed LM-head rows at the last position) and calls
  `pair_scores.yes_no_score` or takes the single "Yes" logit.
- Errors: an over-long pair with truncation off raises InputTooLong naming `truncate`; phase 2 maps it to a 4xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Encoding, Tokenizer

from trt_embed.errors import InputTooLong, InvalidRequest

PairTruncation = Literal["longest_first", "only_first", "only_second", "none"]
PAIR_TRUNCATIONS = ("longest_first", "only_first", "only_second", "none")

# Qwen3-Reranker's model card: the system prompt, the user turn and the (empty) thinking block before the answer.
QWEN3_RERANKER_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_RERANKER_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_RERANKER_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

# bge-reranker-v2-gemma's model card: "A: query", "\n", "B: passage", "\n", then this prompt; score = the "Yes" logit.
GEMMA_RERANKER_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing "
    "a prediction of either 'Yes' or 'No'."
)


def qwen3_reranker_text(query: str, document: str, instruction: str | None = None) -> str:
    """The full prompt Qwen3-Reranker scores (the card's format_instruction inside its prefix and suffix)."""
    task = QWEN3_RERANKER_INSTRUCTION if instruction is None else instruction
    return f"{QWEN3_RERANKER_PREFIX}<Instruct>: {task}\n<Query>: {query}\n<Document>: {document}{QWEN3_RERANKER_SUFFIX}"


def gemma_reranker_parts(query: str, document: str) -> tuple[str, str, str]:
    """bge-reranker-v2-gemma's three texts: the query side, the passage side and the closing prompt."""
    return f"A: {query}", f"B: {document}", GEMMA_RERANKER_PROMPT


class PairTokenizer:
    """Tokenizes (text, text_pair) as the model's tokenizer does (post-processor template: [SEP] layout and
    token_type_ids; truncation of the longer side or of one side), padded to the longest pair of a batch."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, truncation: PairTruncation = "longest_first") -> None:
        if truncation not in PAIR_TRUNCATIONS:
            raise InvalidRequest(f"truncation must be one of {', '.join(PAIR_TRUNCATIONS)}", param="truncation")
        self.max_length = max_length
        self.truncation = truncation
        self.tokenizer = tokenizer
        tokenizer.no_padding()
        if truncation == "none":
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length, strategy=truncation)
        self.pad_id = _pad_id(tokenizer)

    @classmethod
    def from_file(cls, path: Path, max_length: int, truncation: PairTruncation = "longest_first") -> PairTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_length, truncation)

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids [B, longest] (int64) for the pairs, right-padded."""
        try:
            encodings = self.tokenizer.encode_batch([(a, b) for a, b in pairs])
        except Exception as exc:  # only_first/only_second when the other side alone exceeds max_length
            raise InputTooLong(
                f"a pair cannot be cut to {self.max_length} tokens with truncation "
                f"{self.truncation!r}: {exc}; use 'longest_first'",
                param="truncate",
            ) from exc
        longest = max((len(e.ids) for e in encodings), default=0)
        if self.truncation == "none" and longest > self.max_length:
            raise InputTooLong(
                f"a pair has {longest} tokens, over the model's limit of {self.max_length}; set truncate to cut it",
                param="truncate",
            )
        return _padded(encodings, longest, self.pad_id, left=False)


def encode_prompts(tokenizer: Tokenizer, texts: Sequence[str], pad_id: int) -> dict[str, np.ndarray]:
    """LLM-reranker prompts (every special token written in the text) as ids, left-padded like the model cards."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    longest = max((len(e.ids) for e in encodings), default=0)
    arrays = _padded(encodings, longest, pad_id, left=True)
    del arrays["token_type_ids"]
    return arrays


def _pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>", "<|endoftext|>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return found
    return 0


def _padded(encodings: Sequence[Encoding], longest: int, pad_id: int, left: bool) -> dict[str, np.ndarray]:
    ids = np.full((len(encodings), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), longest), dtype=np.int64)
    types = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        cols = slice(longest - n, longest) if left else slice(0, n)
        ids[row, cols] = encoding.ids
        mask[row, cols] = 1
        types[row, cols] = encoding.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
