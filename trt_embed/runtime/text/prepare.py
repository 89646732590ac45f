"""Request inputs -> prepared inputs: chat templates, prompts, tokenization and token-id checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any, cast

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.batching.blocks import TokenBlock
from trt_embed.runtime.text.chat import render_chat
from trt_embed.runtime.text.chunking import Chunked, Chunking, chunk_ids, chunk_texts
from trt_embed.runtime.text.tokenizer import TextTokenizer, Tokenized
from trt_embed.runtime.types import (
    TASK_OUTPUTS,
    BatchKey,
    ChatOptions,
    EmbedRequest,
    Inputs,
    Messages,
    Prepared,
    Truncate,
    text_input,
)


class Preparer:
    """Turns validated requests into `Prepared` inputs for one artifact's tokenizer and prompts."""

    def __init__(self, directory: Path, manifest: Manifest, chunking: Chunking | None = None) -> None:
        self.directory = directory
        self.manifest = manifest
        self.chunking = chunking or Chunking()
        info = manifest.tokenizer
        self.tokenizer = TextTokenizer(directory / info.directory, info, manifest.max_seq_length)

    @functools.cached_property
    def tokenizer_config(self) -> dict[str, Any]:
        """The artifact's tokenizer_config.json (empty if it has none)."""
        config_path = self.directory / self.manifest.tokenizer.directory / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.is_file() else {}
        return config

    @functools.cached_property
    def _chat_template(self) -> tuple[str | None, dict[str, str]]:
        """The tokenizer's chat template and special tokens, read once from tokenizer_config.json."""
        config = self.tokenizer_config
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: use "default"
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        return template, specials

    def render_chat(self, messages: Messages, options: ChatOptions | None = None) -> str:
        """Chat messages as one text, through the model's chat template (or the request's), an error if none."""
        template, specials = self._chat_template
        if isinstance(messages, str | bytes) or not isinstance(messages, list | tuple):
            raise InvalidRequest("messages must be a list of {role, content} objects", "messages")
        return render_chat([dict(m) for m in messages], template, specials, options)

    def resolve_prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        """The prompt text for a request: explicit text, a named prompt, or the model's default."""
        if prompt is not None and prompt_name is not None:
            raise InvalidRequest("give either prompt or prompt_name, not both", "prompt_name")
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.manifest.default_prompt_name
        if name is None:
            return None
        prompts = self.manifest.prompts
        if name not in prompts:
            valid = ", ".join(sorted(prompts)) or "none (this model has no prompts)"
            raise InvalidRequest(f"unknown prompt name {name!r}; valid: {valid}", "prompt_name")
        return prompts[name]

    def tokenize(
        self,
        inputs: Inputs,
        *,
        prompt: str | None = None,
        truncate: Truncate = "end",
        max_tokens: int | None = None,
        add_special_tokens: bool = True,
    ) -> Tokenized:
        """Tokenize texts, or check and truncate token-id lists (which are used as given)."""
        if isinstance(inputs, str):
            raise InvalidRequest("inputs must be a list of strings, not a single string", "input")
        if len(inputs) == 0:
            raise InvalidRequest("inputs are empty: pass at least one text or token list", "input")
        kinds = [isinstance(t, str) for t in inputs]
        if all(kinds):
            texts = [str(t) for t in inputs]
            tokens = self.tokenizer.encode(
                texts, prompt=prompt, truncate=truncate, max_tokens=max_tokens, add_special_tokens=add_special_tokens
            )
            empty = next((n for n, ids in enumerate(tokens.ids) if not ids), None)
            if empty is not None:
                raise no_tokens(empty)
            return tokens
        if any(kinds):
            bad = kinds.index(False)
            raise InvalidRequest(
                f"input[{bad}] is {type(inputs[bad]).__name__}: inputs must be all strings or all token-id lists",
                "input",
            )
        vocab = self.manifest.vocab_size or self.tokenizer.vocab_size
        limit = max_tokens or self.manifest.max_seq_length
        return token_id_inputs(inputs, truncate, limit, vocab, self.tokenizer.check_length)

    def texts_of(self, request: EmbedRequest) -> Inputs:
        """A request's inputs: as given, or its chat messages rendered into one text."""
        if request.messages is not None:
            if request.inputs is not None:
                raise InvalidRequest("give either `input` or `messages`, not both", "messages")
            return [self.render_chat(request.messages, request.chat)]
        if request.inputs is None:
            raise InvalidRequest("`input` is required", "input")
        return request.inputs

    def prepare(self, request: EmbedRequest, variant: str) -> Prepared:
        """Tokenize one validated request (CPU work; async callers run it off the event loop)."""
        prompt = self.resolve_prompt(request.prompt_name, request.prompt)
        inputs = self.texts_of(request)
        key = self.batch_key(request, variant)
        chunked = self.chunking.enabled and request.task == "embed" and request.truncate_prompt_tokens is None
        if chunked:
            pieces = self._chunk(inputs, prompt, request.add_special_tokens)
            return Prepared(key=key, items=pieces.items, counts=pieces.counts)
        tokens = self.request_tokens(request, inputs, prompt)
        items = [text_input(ids, types) for ids, types in zip(tokens.ids, tokens.type_ids, strict=True)]
        return Prepared(key=key, items=items)

    def request_tokens(self, request: EmbedRequest, inputs: Inputs, prompt: str | None) -> Tokenized:
        """`inputs` tokenized with a request's prompt (resolved), truncation and special tokens."""
        return self.tokenize(
            inputs,
            prompt=prompt,
            truncate=request.truncate,
            max_tokens=token_limit(request.truncate_prompt_tokens, self.manifest.max_seq_length),
            add_special_tokens=request.add_special_tokens,
        )

    def batch_key(self, request: EmbedRequest, variant: str, route: str = "text") -> BatchKey:
        """The batch key of a request's inputs (`route`: the route whose engine half batches them): the graph
        output its task reads and the prompt tokens pooling leaves out (`include_prompt=False`)."""
        prompt = self.resolve_prompt(request.prompt_name, request.prompt)
        skip = 0
        if prompt and not self.manifest.pooling.include_prompt and request.task == "embed":
            skip = self.tokenizer.prompt_length(prompt)
        return BatchKey(variant=variant, output=TASK_OUTPUTS[request.task], skip=skip, route=route)

    def prepare_block(self, request: EmbedRequest, inputs: Inputs) -> TokenBlock:
        """Tokenize (or check) a validated request's `inputs` into one token block, with `tokenize`'s checks
        and errors (numbered within `inputs`)."""
        prompt = self.resolve_prompt(request.prompt_name, request.prompt)
        max_tokens = token_limit(request.truncate_prompt_tokens, self.manifest.max_seq_length)
        if not all(isinstance(t, str) for t in inputs):
            return self._id_block(inputs, request.truncate, max_tokens)
        block = self.tokenizer.encode_block(
            [str(t) for t in inputs],
            prompt=prompt,
            truncate=request.truncate,
            max_tokens=max_tokens,
            add_special_tokens=request.add_special_tokens,
        )
        if len(block) and block.lengths.min() == 0:
            raise no_tokens(int(np.argmin(block.lengths)))
        return block

    def _id_block(self, inputs: Inputs, truncate: Truncate, max_tokens: int | None) -> TokenBlock:
        """Token-id lists checked as `token_id_inputs` checks them, in a few array operations when every row is a
        non-empty list of Python ints within the vocabulary and the limit; otherwise row by row (its errors)."""
        vocab = self.manifest.vocab_size or self.tokenizer.vocab_size
        limit = max_tokens or self.manifest.max_seq_length
        if all(type(row) is list for row in inputs):
            rows = cast(list[list[int]], inputs)
            lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
            if (
                len(rows)
                and lengths.min() > 0
                and lengths.max() <= limit
                and set(map(type, chain.from_iterable(rows))) == {int}
            ):
                try:
                    ids = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
                except OverflowError:
                    ids = None  # an id beyond int64: refused row by row below
                if ids is not None and ids.min() >= 0 and ids.max() < vocab:
                    return TokenBlock(ids, lengths)
        return TokenBlock.from_lists(self.tokenize(inputs, truncate=truncate, max_tokens=max_tokens).ids)

    def _chunk(self, inputs: Inputs, prompt: str | None, add_special_tokens: bool) -> Chunked:
        """Inputs whole, cut into pieces within the model's limit (see `chunking`)."""
        limit = self.manifest.max_seq_length
        if all(isinstance(t, str) for t in inputs) and add_special_tokens:
            self.tokenize(inputs[:1], prompt=prompt)  # the shape checks and their errors
            return chunk_texts(self.tokenizer, [str(t) for t in inputs], prompt, self.chunking)
        if all(isinstance(t, str) for t in inputs):
            tokens = self.tokenizer.encode(
                [str(t) for t in inputs], prompt=prompt, truncate="none", add_special_tokens=False, check_length=False
            )
        else:
            vocab = self.manifest.vocab_size or self.tokenizer.vocab_size
            tokens = token_id_inputs(inputs, "end", 2**62, vocab, self.tokenizer.check_length)
        if any(not ids for ids in tokens.ids):
            raise InvalidRequest("an input has no tokens; send some text", "input")
        return chunk_ids(tokens, limit, self.chunking)


class RequestTokenizer:
    """An artifact's texts tokenized as the runtime tokenizes an embed request's (its prompt or the model's default
    one, truncation, special tokens), without opening an engine: for stages that tokenize ahead of the engine (Ray's
    CPU actors). A runtime given these ids as the request's inputs returns what it returns for the texts."""

    def __init__(self, artifact: str | Path) -> None:
        directory = Path(artifact)
        self._preparer = Preparer(directory, Manifest.read(directory))

    def token_ids(self, texts: Sequence[str], request: EmbedRequest) -> list[list[int]]:
        preparer = self._preparer
        prompt = preparer.resolve_prompt(request.prompt_name, request.prompt)
        return [list(ids) for ids in preparer.request_tokens(request, list(texts), prompt).ids]


def no_tokens(index: int) -> InvalidRequest:
    return InvalidRequest(
        f"input[{index}] has no tokens (an empty or whitespace-only text without special tokens); "
        "send some text, or keep add_special_tokens on",
        "input",
    )


def token_id_inputs(inputs: Sequence[Any], truncate: Truncate, limit: int, vocab: int, check_length: Any) -> Tokenized:
    """Token-id inputs, used as given after checking them: integer ids inside the vocabulary, none empty,
    truncated to `limit` (or refused through `check_length` when `truncate` is "none"). The checks run per
    row in C (`map`, `set`, NumPy), not per token in Python: pre-tokenized bulk input is the fast path."""
    ids: list[list[int]] = []
    for n, row in enumerate(inputs):
        tokens = _int_row(row)
        if tokens is None:
            raise InvalidRequest(f"input[{n}] must be a string or a list of integer token ids", "input")
        if not tokens:
            raise InvalidRequest(f"input[{n}] is an empty token list", "input")
        if min(tokens) < 0 or max(tokens) >= vocab:
            raise InvalidRequest(
                f"input[{n}] has token ids outside the vocabulary [0, {vocab}): token ids must come from this "
                "model's tokenizer. OpenAI-compatible clients that count tokens with tiktoken send OpenAI's ids "
                "instead of the text; send texts (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)",
                "input",
            )
        if len(tokens) > limit:
            if truncate == "none":
                check_length(n, len(tokens), limit)
            tokens = tokens[:limit] if truncate == "end" else tokens[-limit:]
        ids.append(tokens)
    return Tokenized(ids=ids, type_ids=[[0] * len(t) for t in ids])


def _int_row(row: Any) -> list[int] | None:
    """`row` as a list of Python ints if it is a list/tuple of ints (not bools) or a 1-D integer array."""
    if isinstance(row, np.ndarray):
        return row.tolist() if row.ndim == 1 and row.dtype.kind in "iu" else None
    if not isinstance(row, list | tuple):
        return None
    kinds = set(map(type, row))
    if kinds <= {int}:
        return row if isinstance(row, list) else list(row)
    if all(issubclass(k, int | np.integer) and not issubclass(k, bool | np.bool_) for k in kinds):
        return [int(t) for t in row]
    return None


def token_limit(truncate_prompt_tokens: int | None, max_seq_length: int) -> int | None:
    """vLLM's `truncate_prompt_tokens`: None (the model's limit applies), -1 (the model's limit) or 1..limit."""
    if truncate_prompt_tokens is None:
        return None
    if truncate_prompt_tokens == -1:
        return max_seq_length
    if not isinstance(truncate_prompt_tokens, bool) and truncate_prompt_tokens > max_seq_length:
        raise InvalidRequest(  # the reference's words
            f"truncate_prompt_tokens value ({truncate_prompt_tokens}) is greater than max_model_len "
            f"({max_seq_length}). Please, select a smaller truncation size.",
            "truncate_prompt_tokens",
        )
    if isinstance(truncate_prompt_tokens, bool) or not 1 <= truncate_prompt_tokens <= max_seq_length:
        raise InvalidRequest(
            f"truncate_prompt_tokens must be -1 or between 1 and {max_seq_length}, got {truncate_prompt_tokens}",
            "truncate_prompt_tokens",
        )
    return truncate_prompt_tokens
