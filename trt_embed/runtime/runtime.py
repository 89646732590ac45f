"""`Runtime`: load an artifact, tokenize, batch through the engine, post-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.artifact import Artifact
from trt_embed.runtime.backends import open_engine
from trt_embed.runtime.postprocess import Vectors, check_dimensions, finish
from trt_embed.runtime.tokenizer import TextTokenizer, Tokenized, Truncate, pad_batch

log = logging.getLogger("trt_embed")

DEFAULT_MAX_BATCH_TOKENS = 8192
DEFAULT_MAX_BATCH_SIZE = 128


class Runtime:
    """Embeds texts with an exported artifact. Thread-safe for concurrent `embed` calls."""

    def __init__(
        self,
        artifact: Artifact,
        *,
        backend: str = "auto",
        precision: str = "fp32",
        variant: str = "base",
        threads: int | None = None,
        verify: bool = True,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ) -> None:
        self.artifact = artifact
        self.manifest: Manifest = artifact.manifest
        choice = open_engine(
            artifact, backend=backend, precision=precision, variant=variant, threads=threads, verify=verify
        )
        self.engine = choice.engine
        self.backend = choice.backend
        self.backend_reason = choice.reason
        log.info("trt-embed backend %s: %s", self.backend, self.backend_reason)
        self.tokenizer = TextTokenizer(
            artifact.directory / self.manifest.tokenizer.directory,
            self.manifest.tokenizer,
            self.manifest.max_seq_length,
        )
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size

    @classmethod
    def load(cls, artifact: str | Path, **options: object) -> Runtime:
        """Open an artifact directory; options as for the constructor (backend, precision, variant, ...)."""
        return cls(Artifact.open(artifact), **options)  # type: ignore[arg-type]

    # -- public API ---------------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def max_seq_length(self) -> int:
        return self.manifest.max_seq_length

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
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        truncate: Truncate = "end",
        max_tokens: int | None = None,
    ) -> Tokenized:
        if isinstance(texts, str):
            raise InvalidRequest("texts must be a list of strings, not a single string", "input")
        if len(texts) == 0:
            raise InvalidRequest("texts is empty: pass at least one text", "input")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InvalidRequest(f"texts[{bad}] is {type(texts[bad]).__name__}, expected str", "input")
        return self.tokenizer.encode(texts, prompt=prompt, truncate=truncate, max_tokens=max_tokens)

    def embed(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalize: bool | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate: Truncate = "end",
        truncate_prompt_tokens: int | None = None,
    ) -> Vectors:
        """Embed texts into float32 [len(texts), dimensions or embedding_dim]; L2-normalized unless
        `normalize=False` (the default follows the model's sentence-transformers config)."""
        dims = check_dimensions(self.manifest, dimensions)
        prompt_text = self.resolve_prompt(prompt_name, prompt)
        max_tokens = self._prompt_token_limit(truncate_prompt_tokens)
        tokenized = self.tokenize(texts, prompt=prompt_text, truncate=truncate, max_tokens=max_tokens)
        skip = self._pooling_skip(prompt_text)
        pooled = self.run_tokenized(tokenized, skip=skip)
        return finish(pooled, dimensions=dims, normalize=self.manifest.normalize if normalize is None else normalize)

    def _prompt_token_limit(self, truncate_prompt_tokens: int | None) -> int | None:
        if truncate_prompt_tokens is None:
            return None
        if truncate_prompt_tokens == -1:
            return self.max_seq_length
        if not 1 <= truncate_prompt_tokens <= self.max_seq_length:
            raise InvalidRequest(
                f"truncate_prompt_tokens must be -1 or between 1 and {self.max_seq_length}, "
                f"got {truncate_prompt_tokens}",
                "truncate_prompt_tokens",
            )
        return truncate_prompt_tokens

    def _pooling_skip(self, prompt_text: str | None) -> int:
        """Leading tokens excluded from pooling (sentence-transformers `include_prompt=False`)."""
        if prompt_text and not self.manifest.pooling.include_prompt:
            return self.tokenizer.prompt_length(prompt_text)
        return 0

    # -- batching -------------------------------------------------------------------------------------

    def plan_batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        """Group input indices into batches, longest first, within the token budget and batch size."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        profiles = self.engine.profiles
        batch: list[int] = []
        for index in order:
            width = lengths[batch[0]] if batch else lengths[index]
            full = len(batch) >= self.max_batch_size or (len(batch) + 1) * width > self.max_batch_tokens
            if batch and (full or (profiles and not any(p.fits(len(batch) + 1, width) for p in profiles))):
                yield batch
                batch = []
            batch.append(index)
        if batch:
            yield batch

    def run_tokenized(self, tokenized: Tokenized, *, skip: int = 0, output: str = "sentence_embedding") -> Vectors:
        """Run tokenized inputs through the engine in length-sorted batches; rows in input order."""
        groups = list(self.plan_batches(tokenized.lengths))
        batches = (
            self._inputs([tokenized.ids[i] for i in indices], [tokenized.type_ids[i] for i in indices], skip)
            for indices in groups
        )  # lazy: a pipelining engine pads the next batch while the current one runs
        result: Vectors | None = None
        for indices, outputs in zip(groups, self.engine.infer_batches(batches, [output]), strict=True):
            pooled = outputs[output]
            if result is None:
                result = np.empty((len(tokenized), *pooled.shape[1:]), dtype=np.float32)
            result[indices] = pooled
        assert result is not None
        return result

    def run_batch(self, ids: list[list[int]], type_ids: list[list[int]], skip: int = 0) -> Vectors:
        """One engine call for one batch of token-id lists; returns pooled vectors [B, D]."""
        return self.engine.infer(self._inputs(ids, type_ids, skip), ["sentence_embedding"])["sentence_embedding"]

    def _inputs(self, ids: list[list[int]], type_ids: list[list[int]], skip: int) -> dict[str, np.ndarray]:
        info = self.manifest.tokenizer
        arrays = pad_batch(ids, type_ids, pad_id=info.pad_token_id, side=info.padding_side)
        inputs = dict(arrays)
        if "pooling_mask" in self.engine.input_names:
            inputs["pooling_mask"] = _exclude_leading(arrays["attention_mask"], skip)
        return inputs

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _exclude_leading(mask: np.ndarray, skip: int) -> np.ndarray:
    """Zero the first `skip` real tokens of each row (after any left padding)."""
    if skip <= 0:
        return mask
    first = mask.argmax(axis=1)
    positions = np.arange(mask.shape[1])[None, :]
    out = mask.copy()
    out[positions < (first + skip)[:, None]] = 0
    return out
