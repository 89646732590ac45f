"""Tokenization for the runtime: `tokenizers` only, with truncation policies."""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from trt_embed.errors import ArtifactError, InputTooLong, InvalidRequest
from trt_embed.manifest import TokenizerInfo
from trt_embed.runtime.batching.blocks import TokenBlock
from trt_embed.runtime.types import TRUNCATE_MODES, Truncate

# Texts longer than the model's limit x CHARS_PER_TOKEN characters are tokenized from the piece truncation keeps
# (a prefix, or a suffix when cutting at the start; cut at a space) when the tokenizer never joins characters across
# spaces; the piece must yield SPARE_TOKENS more than the limit (the tokens at the cut may differ from the full
# text's), or the full text is tokenized after all.
CHARS_PER_TOKEN = 8
SPARE_TOKENS = 8
_SPLIT_AT_SPACES = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Metaspace", "ByteLevel"}
_LOCAL_PRE_TOKENIZERS = {*_SPLIT_AT_SPACES, "Punctuation", "Digits"}
_LOCAL_NORMALIZERS = {
    "BertNormalizer",
    "Lowercase",
    "NFC",
    "NFD",
    "NFKC",
    "NFKD",
    "StripAccents",
    "Strip",
    "Prepend",
    "Replace",
    "Precompiled",
}


def _parts(part: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """A pre-tokenizer or normalizer as the list of its steps (a `Sequence` flattened)."""
    if part is None:
        return []
    if part.get("type") == "Sequence":
        return [p for inner in part.get(key) or [] for p in _parts(inner, key)]
    return [part]


def cuts_at_spaces(config: dict[str, Any]) -> bool:
    """Whether a tokenizer (its tokenizer.json) splits text at spaces before its model runs and otherwise works
    character by character, so that a text's tokens before a space do not depend on what follows it."""
    steps = _parts(config.get("pre_tokenizer"), "pretokenizers")
    whole = [s for s in steps if s.get("split") is False or s.get("use_regex") is False]  # Metaspace / ByteLevel
    return (
        not whole
        and any(s.get("type") in _SPLIT_AT_SPACES for s in steps)
        and all(s.get("type") in _LOCAL_PRE_TOKENIZERS for s in steps)
        and all(n.get("type") in _LOCAL_NORMALIZERS for n in _parts(config.get("normalizer"), "normalizers"))
    )


def too_long(limit: int, length: int, operation: str = "embedding generation", what: str = "maximum context") -> str:
    """The reference's refusal of an over-long input, word for word (clients match on it)."""
    return (
        f"This model's {what} length is {limit} tokens. However, you requested {length} tokens in the input for "
        f"{operation}. Please reduce the length of the input."
    )


@dataclasses.dataclass
class Tokenized:
    """Token ids of a list of inputs, unpadded (one list per input)."""

    ids: list[list[int]]
    type_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> list[int]:
        return [len(i) for i in self.ids]


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer`; one configured instance per truncation side (they are not
    safe to reconfigure while other threads encode)."""

    def __init__(self, directory: Path, info: TokenizerInfo, max_length: int) -> None:
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the artifact is incomplete, re-export the model")
        base = Tokenizer.from_file(str(path))
        base.no_padding()
        base.no_truncation()
        self.info = info
        self.max_length = max_length
        self.pad_id = info.pad_token_id
        self._plain = base
        self._by_side: dict[Truncate, Tokenizer] = {"none": base}
        for mode, direction in (("end", "right"), ("start", "left")):
            tok = Tokenizer.from_str(base.to_str())
            tok.enable_truncation(max_length, direction=direction)
            self._by_side[mode] = tok  # type: ignore[index]
        self.num_special_tokens = base.num_special_tokens_to_add(is_pair=False)
        # A template gives each of its pieces one type id whatever the text: one probe shows whether a single
        # text's type ids are all 0 (BERT-style templates), so token blocks need not read them.
        self._zero_types = {
            flag: not any(base.encode("probe text", add_special_tokens=flag).type_ids) for flag in (True, False)
        }
        self._pieces_exact = cuts_at_spaces(json.loads(base.to_str()))

    def _prepare(self, texts: Sequence[str], prompt: str | None) -> list[str]:
        if prompt:
            texts = [prompt + t for t in texts]
        if self.info.do_lower_case:
            texts = [t.lower() for t in texts]
        return list(texts)

    def encode(
        self,
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        truncate: Truncate = "end",
        max_tokens: int | None = None,
        add_special_tokens: bool = True,
        check_length: bool = True,
    ) -> Tokenized:
        """Tokenize texts. `max_tokens` (<= the model maximum) keeps at most that many tokens,
        special tokens included, cutting from the side `truncate` names."""
        encodings, limit = self._encodings(texts, prompt, truncate, max_tokens, add_special_tokens)
        if truncate == "none" and check_length:
            self._check_lengths(encodings, limit)
        return Tokenized(ids=[e.ids for e in encodings], type_ids=[e.type_ids for e in encodings])

    def encode_block(
        self,
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        truncate: Truncate = "end",
        max_tokens: int | None = None,
        add_special_tokens: bool = True,
    ) -> TokenBlock:
        """`encode` into one `TokenBlock`: the ids straight into one array, no list per input kept, and no type
        ids read where the tokenizer's template gives single texts none but 0."""
        encodings, limit = self._encodings(texts, prompt, truncate, max_tokens, add_special_tokens)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        if truncate == "none" and len(lengths) and lengths.max() > limit:
            index = int(np.argmax(lengths > limit))
            self.check_length(index, int(lengths[index]), limit)
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(map(_IDS, encodings)), dtype=np.int64, count=total)
        types = None
        if not self._zero_types[add_special_tokens]:
            types = np.fromiter(chain.from_iterable(map(_TYPE_IDS, encodings)), dtype=np.int64, count=total)
        return TokenBlock(ids, lengths, types)

    def _encodings(
        self, texts: Sequence[str], prompt: str | None, truncate: Truncate, max_tokens: int | None, specials: bool
    ) -> tuple[list[Encoding], int]:
        if truncate not in TRUNCATE_MODES:
            raise InvalidRequest(f"truncate must be one of {', '.join(TRUNCATE_MODES)}, got {truncate!r}", "truncate")
        prepared = self._prepare(texts, prompt)
        limit = self.max_length if max_tokens is None else max_tokens
        if limit > self.max_length or limit < 1:
            raise InvalidRequest(
                f"max tokens {limit} must be between 1 and the model's maximum length {self.max_length}",
                "truncate_prompt_tokens",
            )
        cut = self._pieces(prepared, limit, truncate) if truncate != "none" and self._pieces_exact else {}
        rest = [t for n, t in enumerate(prepared) if n not in cut] if cut else prepared
        if limit == self.max_length and specials:
            encodings = _encode_batch(self._by_side[truncate], rest, add_special_tokens=True)
        else:
            encodings = self._encode_custom(rest, truncate, limit, specials)
        if not cut:
            return encodings, limit
        full = [prepared[n] for n in cut]
        long = iter(self._encode_custom(list(cut.values()), truncate, limit, specials, full=full))
        short = iter(encodings)
        return [next(long) if n in cut else next(short) for n in range(len(prepared))], limit

    @staticmethod
    def _pieces(texts: list[str], limit: int, truncate: Truncate) -> dict[int, str]:
        """For texts longer than `limit` x CHARS_PER_TOKEN characters, the piece truncation keeps: a prefix ending
        at the first space past that many characters (`end`), or a suffix starting at the last space before them
        (`start`; the space kept, as the token after it has it in the full text)."""
        chars = limit * CHARS_PER_TOKEN
        cut = {}
        for n, text in enumerate(texts):
            if len(text) > chars:
                if truncate == "end":
                    end = text.find(" ", chars, chars + 1024)
                    if end > 0:
                        cut[n] = text[:end]
                else:
                    start = text.rfind(" ", max(0, len(text) - chars - 1024), len(text) - chars)
                    if start > 0:
                        cut[n] = text[start:]
        return cut

    def _encode_custom(
        self, texts: list[str], truncate: Truncate, limit: int, specials: bool, full: list[str] | None = None
    ) -> list[Encoding]:
        """Tokenize, truncate to `limit`, add special tokens. `full`: `texts` are pieces of these, and any piece
        without SPARE_TOKENS beyond the budget is tokenized in full instead."""
        encodings = _encode_batch(self._plain, texts, add_special_tokens=False)
        budget = limit - (self.num_special_tokens if specials else 0)
        if budget < 1:
            raise InvalidRequest(f"max tokens {limit} leaves no room for text after special tokens", "max_tokens")
        out = []
        for n, enc in enumerate(encodings):
            if full is not None and len(enc.ids) < budget + SPARE_TOKENS:
                enc = _encode_batch(self._plain, [full[n]], add_special_tokens=False)[0]
            if truncate != "none" and len(enc.ids) > budget:
                enc.truncate(budget, direction="right" if truncate == "end" else "left")
            out.append(self._plain.post_process(enc, add_special_tokens=specials) if specials else enc)
        return out

    @classmethod
    def _check_lengths(cls, encodings: list[Encoding], limit: int) -> None:
        for index, enc in enumerate(encodings):
            cls.check_length(index, len(enc.ids), limit)

    @staticmethod
    def check_length(index: int, length: int, limit: int, operation: str = "embedding generation") -> None:
        if length > limit:
            raise InputTooLong(too_long(limit, length, operation), "input")

    def encode_chunks(self, texts: Sequence[str], prompt: str | None = None) -> list[list[Encoding]]:
        """Each text cut into pieces of at most the model's length, each piece with the model's special tokens
        (the prompt, if any, starts the first piece only)."""
        encodings = self._by_side["end"].encode_batch(self._prepare(texts, prompt), add_special_tokens=True)
        return [[enc, *enc.overflowing] for enc in encodings]

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt occupies at the start of an input (its leading special tokens included),
        as sentence-transformers counts it for `include_prompt=False` pooling."""
        enc = self._plain.encode(self._prepare([prompt], None)[0], add_special_tokens=True)
        trailing = 1 if enc.special_tokens_mask and enc.special_tokens_mask[-1] else 0
        return len(enc.ids) - trailing

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._plain.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self._plain.id_to_token(token_id)

    @property
    def vocab_size(self) -> int:
        return self._plain.get_vocab_size(with_added_tokens=True)


def _encode_batch(tokenizer: Tokenizer, texts: list[str], *, add_special_tokens: bool) -> list[Encoding]:
    """`encode_batch` without character offsets (nothing here reads them; about 20% less tokenizer time), on
    tokenizers versions that have it."""
    fast = getattr(tokenizer, "encode_batch_fast", None)
    encode = fast if fast is not None else tokenizer.encode_batch
    encodings: list[Encoding] = encode(texts, add_special_tokens=add_special_tokens)
    return encodings


_IDS = operator.attrgetter("ids")
_TYPE_IDS = operator.attrgetter("type_ids")
