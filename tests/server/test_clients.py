"""The official openai and cohere clients work unchanged against the server; answers equal Runtime.embed."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from conftest import API_KEY, LiveServer

from trt_embed.runtime import Runtime
from trt_embed.runtime.outputs import encoding

TEXTS = ["The cat sat on the mat.", "Quantum computers use qubits.", "how do I reset my password"]


def test_openai_float_and_base64(live: LiveServer, reference: dict[str, Runtime]) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=API_KEY)
    expected = reference["minilm"].embed(TEXTS)
    # no encoding_format: the client asks for base64 itself and decodes it
    for fmt in ("float", "base64", None):
        kwargs = {} if fmt is None else {"encoding_format": fmt}
        response = client.embeddings.create(model="minilm", input=TEXTS, **kwargs)
        if fmt == "base64":  # asked for explicitly: the client hands the strings over as they came
            got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in response.data])
        else:
            got = np.array([d.embedding for d in response.data], dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert [d.index for d in response.data] == [0, 1, 2]
        assert response.model == "minilm"
        assert response.usage.prompt_tokens == sum(reference["minilm"].tokenize(TEXTS).lengths)
    single = client.embeddings.create(model="minilm", input=TEXTS[0])
    np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-6)


def test_openai_dimensions_and_errors(live: LiveServer, reference: dict[str, Runtime]) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=API_KEY)
    response = client.embeddings.create(model="tiny", input=TEXTS, dimensions=16)
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, reference["tiny"].embed(TEXTS, dimensions=16), atol=1e-6)
    with pytest.raises(openai.BadRequestError, match="does not support Matryoshka"):
        client.embeddings.create(model="minilm", input=TEXTS, dimensions=16)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="gpt-nothing", input=TEXTS)
    bad = openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="minilm", input=TEXTS)


def test_openai_token_ids(live: LiveServer, reference: dict[str, Runtime]) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=API_KEY)
    ids = reference["minilm"].tokenize(TEXTS).ids
    response = client.embeddings.create(model="minilm", input=ids)
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, reference["minilm"].embed(TEXTS), atol=1e-6)


def test_cohere_embedding_types(live: LiveServer, reference: dict[str, Runtime]) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=API_KEY, base_url=live.url)
    runtime = reference["minilm"]
    response = client.embed(
        model="minilm",
        texts=TEXTS,
        input_type="search_document",
        embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"],
    )
    expected = runtime.embed(TEXTS)
    embeddings = response.embeddings
    np.testing.assert_allclose(np.array(embeddings.float_, dtype=np.float32), expected, atol=1e-6)
    np.testing.assert_array_equal(np.array(embeddings.binary), encoding.binary(expected))
    np.testing.assert_array_equal(np.array(embeddings.ubinary), encoding.ubinary(expected))
    ranges = encoding.quantization_ranges(runtime.manifest, None, normalized=True)
    np.testing.assert_array_equal(np.array(embeddings.int8), encoding.quantize(expected, ranges, signed=True))
    np.testing.assert_array_equal(np.array(embeddings.uint8), encoding.quantize(expected, ranges, signed=False))
    assert embeddings.base64 == encoding.to_base64(expected)
    assert response.texts == TEXTS
    assert response.meta.billed_units.input_tokens == sum(runtime.tokenize(TEXTS).lengths)


def test_cohere_input_types_map_onto_prompts(live: LiveServer, reference: dict[str, Runtime]) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=API_KEY, base_url=live.url)
    runtime = reference["tiny"]
    query = client.embed(model="tiny", texts=TEXTS, input_type="search_query", embedding_types=["float"])
    np.testing.assert_allclose(query.embeddings.float_, runtime.embed(TEXTS, prompt_name="query"), atol=1e-6)
    doc = client.embed(model="tiny", texts=TEXTS, input_type="search_document", embedding_types=["float"])
    np.testing.assert_allclose(doc.embeddings.float_, runtime.embed(TEXTS, prompt_name="document"), atol=1e-6)
    own = client.embed(model="tiny", texts=TEXTS, input_type="query", embedding_types=["float"], output_dimension=32)
    expected_own = runtime.embed(TEXTS, prompt_name="query", dimensions=32)
    np.testing.assert_allclose(own.embeddings.float_, expected_own, atol=1e-6)
    plain = client.embed(model="tiny", texts=TEXTS, input_type="clustering", embedding_types=["float"])
    np.testing.assert_allclose(plain.embeddings.float_, runtime.embed(TEXTS), atol=1e-6)
    with pytest.raises(cohere.BadRequestError, match=r"unknown input_type 'legal'; valid: .*document.*search_query"):
        client.embed(model="tiny", texts=TEXTS, input_type="legal", embedding_types=["float"])
    # a model without prompts takes every standard input type, with no prefix (vLLM rejects these)
    minilm = client.embed(model="minilm", texts=TEXTS, input_type="search_query", embedding_types=["float"])
    np.testing.assert_allclose(minilm.embeddings.float_, reference["minilm"].embed(TEXTS), atol=1e-6)
