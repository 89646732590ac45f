"""Output encodings against independent oracles (NumPy, ml_dtypes, sentence-transformers)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.outputs import encoding


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(3)
    v = rng.standard_normal((5, 64)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("endianness", ["little", "big", "native"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_base64_round_trips(vectors: np.ndarray, dtype: str, endianness: str) -> None:
    order = {"little": "<", "big": ">", "native": "="}[endianness]
    for row, text in zip(vectors, encoding.to_base64(vectors, dtype, endianness), strict=True):
        decoded = np.frombuffer(base64.b64decode(text), dtype=f"{order}{'f4' if dtype == 'float32' else 'f2'}")
        np.testing.assert_array_equal(decoded, row.astype(dtype))


@pytest.mark.parametrize("endianness", ["little", "big"])
def test_bfloat16_matches_ml_dtypes(vectors: np.ndarray, endianness: str) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    special = np.array([[0.0, -0.0, np.inf, -np.inf, 1e-40, 3.4e38, 1.00390625, 1.01171875]], dtype=np.float32)
    for data in (vectors, special):
        expected = data.astype(ml_dtypes.bfloat16).view(np.uint16)
        got = [
            np.frombuffer(b, dtype=f"{'<' if endianness == 'little' else '>'}u2")
            for b in encoding.typed_bytes(data, "bfloat16", endianness)
        ]
        np.testing.assert_array_equal(np.stack(got), expected)


def test_binary_matches_sentence_transformers(vectors: np.ndarray) -> None:
    st = pytest.importorskip("sentence_transformers")
    assert not (vectors == 0).any(), "threshold choice (>= 0 vs > 0) only differs at exact zeros"
    np.testing.assert_array_equal(encoding.binary(vectors), st.quantize_embeddings(vectors, precision="binary"))
    np.testing.assert_array_equal(encoding.ubinary(vectors), st.quantize_embeddings(vectors, precision="ubinary"))


def test_binary_definition() -> None:
    v = np.array([[1, -1, 0, -0.5, 2, -3, 0.1, -0.1, *([-1] * 7), 1]], dtype=np.float32)
    # >= 0 sets the bit (zero counts as positive), most significant bit first
    assert encoding.ubinary(v).tolist() == [[0b10101010, 0b00000001]]
    assert encoding.binary(v).tolist() == [[0b10101010 - 128, 1 - 128]]
    with pytest.raises(InvalidRequest, match="multiple of 8"):
        encoding.ubinary(v[:, :12])


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_int8_matches_sentence_transformers_inside_the_range(vectors: np.ndarray, precision: str) -> None:
    st = pytest.importorskip("sentence_transformers")
    ranges = np.stack([vectors.min(axis=0) - 0.01, vectors.max(axis=0) + 0.01]).astype(np.float32)
    expected = st.quantize_embeddings(vectors, precision=precision, ranges=ranges)
    got = encoding.quantize(vectors, ranges, signed=precision == "int8")
    np.testing.assert_array_equal(got, expected)


def test_int8_clips_outside_the_range() -> None:
    ranges = np.array([[-1.0, -1.0], [1.0, 1.0]], dtype=np.float32)
    v = np.array([[5.0, -5.0]], dtype=np.float32)
    assert encoding.quantize(v, ranges, signed=True).tolist() == [[127, -128]]
    assert encoding.quantize(v, ranges, signed=False).tolist() == [[255, 0]]


def test_bad_dtype_and_endianness(vectors: np.ndarray) -> None:
    with pytest.raises(InvalidRequest, match="embed_dtype must be one of"):
        encoding.to_base64(vectors, "float8")
    with pytest.raises(InvalidRequest, match="endianness must be one of"):
        encoding.to_base64(vectors, "float32", "middle")


@pytest.mark.parametrize("dtype", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_matches_torch_casts(vectors: np.ndarray, dtype: str) -> None:
    """The reference encodes with torch: our fp8 bytes are torch's, rounding, saturation (e4m3) and overflow
    (e5m2) included."""
    torch = pytest.importorskip("torch")
    torch_dtype = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}[dtype]
    rng = np.random.default_rng(3)
    extremes = np.array([[1e3, -1e3, 449.0, 448.0, 6e4, -1e5, 1e-9, -3e-5]], dtype=np.float32)
    for values in (vectors, rng.normal(0, 30, (4, 64)).astype(np.float32), extremes):
        want = [r.tobytes() for r in torch.from_numpy(values).to(torch_dtype).view(torch.uint8).numpy()]
        assert encoding.typed_bytes(values, dtype, "big") == want  # one byte per value: no byte order


def test_binary_body_layout(vectors: np.ndarray) -> None:
    """`bytes`: the rows back to back, each item saying where its bytes lie and the shape to read them as."""
    rows = [vectors[0], vectors[1:3]]  # a vector and a token matrix
    body, items = encoding.binary_body(rows, "float16", "big")
    for row, item in zip(rows, items, strict=True):
        got = np.frombuffer(body[item["start"] : item["end"]], ">f2").reshape(item["shape"])
        np.testing.assert_allclose(got, row.astype(np.float16), atol=0)
    assert items[-1]["end"] == len(body) and [i["index"] for i in items] == [0, 1]
