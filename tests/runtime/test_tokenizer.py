"""The runtime's tokenizer (Rust `tokenizers`, without character offsets) gives the ids transformers' tokenizer
gives, on the real all-MiniLM-L6-v2 and real paragraphs, for both truncation sides."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trt_embed.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("side", ["end", "start"])
def test_ids_equal_transformers(minilm_artifact: Path, side: str) -> None:
    transformers = pytest.importorskip("transformers")
    paragraphs = json.loads((ROOT / "benchmarks" / "data" / "corpus.json").read_text())[:200]
    texts = [*paragraphs, "Ünïcödé façade — naïve café", "tabs\tand\nnewlines", " ".join(paragraphs[:8])]
    with Runtime.load(minilm_artifact, workers=1) as runtime:
        ours = runtime.tokenize(texts, truncate=side).ids
        limit = runtime.max_seq_length
    reference = transformers.AutoTokenizer.from_pretrained(str(minilm_artifact / "tokenizer"))
    reference.truncation_side = "right" if side == "end" else "left"
    want = reference(texts, truncation=True, max_length=limit)["input_ids"]
    assert [list(row) for row in ours] == want
    assert max(map(len, want)) == limit, "one input is cut at the model's limit"


# -- long texts: tokenized from the piece truncation keeps, with the full text's tokens ----------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, list[str]], Path]]:
    """`_trained`, once per kind for the module (training the unigram model takes seconds)."""
    made: dict[str, Path] = {}

    def get(kind: str, corpus: list[str]) -> Path:
        if kind not in made:
            made[kind] = _trained(kind, corpus, tmp_path_factory.mktemp("tokenizers") / kind)
        return made[kind]

    yield get


def _trained(kind: str, corpus: list[str], directory: Path) -> Path:
    """A small tokenizer of `kind` trained on the corpus: byte-level BPE (RoBERTa-style, with <s> </s>) or a
    Metaspace unigram (XLM-R-style)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer: object = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"])
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"], unk_token="<pad>")
    tok.train_from_iterator(corpus, trainer=trainer)  # type: ignore[arg-type]
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)])
    directory.mkdir()
    tok.save(str(directory / "tokenizer.json"))
    return directory


def _long_texts(corpus: list[str]) -> list[str]:
    docs = [" ".join(corpus[i : i + 150]) for i in range(0, 600, 150)]  # ~40k characters each
    return [
        *docs,
        corpus[3],  # short: untouched
        ("a" * 99 + " ") * 700,  # long words
        "x" * 9000 + " " + docs[0],  # no space near the cut: not cut
        docs[1].replace(" ", "\t"),  # tabs, no spaces: not cut (Metaspace splits at spaces only)
        "  ".join(docs[2].split(" ")),  # double spaces everywhere
        "日本語のテキスト " * 2000,  # few spaces, many characters per word
    ]


@pytest.mark.parametrize("side", ["end", "start"])
@pytest.mark.parametrize("kind", ["minilm", "bpe", "unigram"])
def test_long_texts_tokenize_from_the_kept_piece_exactly(
    minilm_artifact: Path,
    trained: Callable[[str, list[str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    side: str,
) -> None:
    from tokenizers import Tokenizer

    from trt_embed.manifest import TokenizerInfo
    from trt_embed.runtime.text import tokenizer as module

    corpus = json.loads((ROOT / "benchmarks" / "data" / "corpus.json").read_text())
    directory = minilm_artifact / "tokenizer" if kind == "minilm" else trained(kind, corpus)
    texts = _long_texts(corpus)
    limit = 128
    ours = module.TextTokenizer(directory, TokenizerInfo(), limit)
    assert ours._pieces_exact
    seen: list[str] = []
    encode = module._encode_batch
    monkeypatch.setattr(module, "_encode_batch", lambda tok, t, **kw: seen.extend(t) or encode(tok, t, **kw))

    reference = Tokenizer.from_file(str(directory / "tokenizer.json"))
    reference.no_padding()
    for max_tokens, specials in ((None, True), (40, True), (None, False)):
        cap = max_tokens or limit
        reference.enable_truncation(cap, direction="right" if side == "end" else "left")  # specials count in it
        want = [e.ids for e in reference.encode_batch(texts, add_special_tokens=specials)]
        seen.clear()
        got = ours.encode(texts, max_tokens=max_tokens, add_special_tokens=specials, truncate=side)
        assert got.ids == want, (kind, max_tokens, specials)
        block = ours.encode_block(texts, max_tokens=max_tokens, add_special_tokens=specials, truncate=side)
        assert block.ids.tolist() == [t for row in want for t in row]
        assert not set(texts[:4]) & set(seen), "the long documents were tokenized from the pieces kept"
    monkeypatch.setattr(module, "SPARE_TOKENS", 10**9)  # no piece has tokens to spare: each long text in full
    seen.clear()
    assert ours.encode(texts, truncate=side).ids == [e.ids for e in reference.encode_batch(texts)]
    assert set(texts[:4]) <= set(seen)


def test_prefixes_only_for_tokenizers_that_split_at_spaces() -> None:
    from trt_embed.runtime.text.tokenizer import cuts_at_spaces

    bert = {"normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"}}
    assert cuts_at_spaces(bert)
    assert cuts_at_spaces(
        {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Metaspace"}, {"type": "Digits"}]}}
    )
    assert not cuts_at_spaces({**bert, "pre_tokenizer": None}), "no pre-tokenizer: the model sees the whole text"
    assert not cuts_at_spaces({"pre_tokenizer": {"type": "Metaspace", "split": False}})
    assert not cuts_at_spaces({"pre_tokenizer": {"type": "ByteLevel", "use_regex": False}}), "one piece: BPE on all"
    assert not cuts_at_spaces({"pre_tokenizer": {"type": "Punctuation"}}), "pieces that hold spaces"
    assert not cuts_at_spaces({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": ".{1,9}"}}})
    assert not cuts_at_spaces({**bert, "normalizer": {"type": "Sequence", "normalizers": [{"type": "Unknown"}]}})
