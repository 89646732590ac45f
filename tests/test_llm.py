"""The offline API as the reference's users call it (its docs' examples), against sentence-transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InputTooLong, InvalidRequest
from trt_embed.llm import LLM, PoolingParams

PROMPTS = ["Hello, my name is", "The president of the United States is", "The capital of France is"]


@pytest.fixture(scope="module")
def st(minilm_dir: Path) -> Any:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def llm(minilm_artifact: Path) -> Any:
    with LLM(model=str(minilm_artifact), runner="pooling", enforce_eager=True) as model:
        yield model


def test_embed_encode_score(llm: LLM, st: Any) -> None:
    expected = st.encode(PROMPTS)
    outputs = llm.embed(PROMPTS)
    got = np.array([o.outputs.embedding for o in outputs], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert outputs[0].outputs.hidden_size == 384 and isinstance(outputs[0].outputs.embedding, list)
    assert outputs[0].prompt_token_ids == st.tokenizer(PROMPTS[0])["input_ids"]
    encoded = llm.encode(PROMPTS, pooling_task="embed")
    np.testing.assert_allclose(np.stack([o.outputs.data for o in encoded]), expected, atol=2e-5)
    tokens = llm.encode(PROMPTS[:1], pooling_task="token_embed")[0].outputs.data
    want = st.encode(PROMPTS[:1], output_value="token_embeddings")[0]
    np.testing.assert_allclose(tokens, np.asarray(want), atol=2e-4)
    ids = llm.embed({"prompt_token_ids": outputs[1].prompt_token_ids})[0].outputs.embedding
    np.testing.assert_allclose(ids, expected[1], atol=2e-5)

    raw = llm.embed(PROMPTS, pooling_params=PoolingParams(use_activation=False))
    norms = np.linalg.norm(np.array([o.outputs.embedding for o in raw]), axis=-1)
    assert np.all(np.abs(norms - 1) > 1e-3), "use_activation=False: pooled vectors as they are"

    text_1, texts_2 = "What is the capital of France?", ["The capital of Brazil is Brasilia.", "Paris is in France."]
    scores = [o.outputs.score for o in llm.score(text_1, texts_2)]
    q, d = st.encode([text_1]), st.encode(texts_2)
    np.testing.assert_allclose(scores, (q @ d.T)[0], atol=1e-5)
    pairwise = [o.outputs.score for o in llm.score(texts_2, texts_2)]
    np.testing.assert_allclose(pairwise, [1.0, 1.0], atol=1e-5)


def test_over_length_and_options(llm: LLM, minilm_artifact: Path, st: Any) -> None:
    long = "word " * 400
    with pytest.raises(InputTooLong, match="maximum context length is 256 tokens"):
        llm.embed([long])
    cut = llm.embed([long], truncate_prompt_tokens=-1)[0]
    np.testing.assert_allclose(cut.outputs.embedding, st.encode([long])[0], atol=2e-5)
    assert len(cut.prompt_token_ids) == 256
    with pytest.raises(InvalidRequest, match="Unsupported task: 'classify'"):
        llm.encode(PROMPTS, pooling_task="classify")
    with pytest.raises(TypeError, match="unexpected arguments: nonsense"):
        LLM(model=str(minilm_artifact), nonsense=1)
    with LLM(model=str(minilm_artifact), pooler_config={"enable_chunked_processing": True}) as chunked:
        assert len(chunked.embed([long])[0].outputs.embedding) == 384
