"""Output encodings, backend-neutral: float lists, base64 (float32/float16/bfloat16/fp8, either byte order),
binary/ubinary sign bits and calibrated int8/uint8.

Binary threshold: a bit is 1 when the value is >= 0 (sentence-transformers uses > 0; the two differ only
for exact zeros, which a normalized float embedding essentially never has). Bits are packed most
significant bit first; `binary` is `ubinary - 128` as int8, as sentence-transformers and Cohere define it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.errors import InvalidRequest, MissingDependency
from trt_embed.manifest import Manifest
from trt_embed.runtime.types import EMBED_DTYPES, ENCODINGS, ENDIANNESS, EncodingName, Vectors


def bfloat16_bits(vectors: Vectors) -> npt.NDArray[np.uint16]:
    """float32 -> bfloat16 bit patterns with round-to-nearest-even (NaN stays NaN)."""
    bits = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(vectors)
    out = rounded.astype(np.uint16)
    out[nan] = np.uint16(0x7FC0)
    return out


def fp8_bits(vectors: Vectors, embed_dtype: str) -> npt.NDArray[np.uint8]:
    """float32 -> fp8 bit patterns as torch's casts make them (the reference encodes with torch): `fp8_e4m3` is
    E4M3FN, saturating at +-448; `fp8_e5m2` overflows to infinity; nearest-even rounding (ml_dtypes)."""
    try:
        import ml_dtypes
    except ImportError:
        raise MissingDependency("ml_dtypes", "server") from None
    values = np.asarray(vectors, dtype=np.float32)
    if embed_dtype == "fp8_e4m3":
        fp8 = np.clip(values, -448.0, 448.0).astype(ml_dtypes.float8_e4m3fn)
    else:
        fp8 = values.astype(ml_dtypes.float8_e5m2)
    bits: npt.NDArray[np.uint8] = fp8.view(np.uint8).copy()
    bits[np.isnan(values)] = 0x7F  # torch's NaN pattern for both formats
    return bits


def typed_bytes(vectors: Vectors, embed_dtype: str = "float32", endianness: str = "little") -> list[bytes]:
    """Each row as raw bytes of `embed_dtype` in the given byte order."""
    if embed_dtype not in EMBED_DTYPES:
        raise InvalidRequest(
            f"embed_dtype must be one of {', '.join(EMBED_DTYPES)}, got {embed_dtype!r}", "embed_dtype"
        )
    if endianness not in ENDIANNESS:
        raise InvalidRequest(f"endianness must be one of {', '.join(ENDIANNESS)}, got {endianness!r}", "endianness")
    order = {"native": "=", "little": "<", "big": ">"}[endianness]
    if embed_dtype.startswith("fp8_"):  # one byte per value: no byte order
        return [row.tobytes() for row in fp8_bits(vectors, embed_dtype)]
    if embed_dtype == "bfloat16":
        data: npt.NDArray[np.generic] = bfloat16_bits(vectors).astype(f"{order}u2")
    else:
        data = np.asarray(vectors).astype(f"{order}{'f4' if embed_dtype == 'float32' else 'f2'}")
    return [row.tobytes() for row in data]


def to_base64(vectors: Vectors, embed_dtype: str = "float32", endianness: str = "little") -> list[str]:
    return [base64.b64encode(b).decode("ascii") for b in typed_bytes(vectors, embed_dtype, endianness)]


def ubinary(vectors: Vectors) -> npt.NDArray[np.uint8]:
    _check_bits(vectors)
    return np.packbits(vectors >= 0, axis=-1)


def binary(vectors: Vectors) -> npt.NDArray[np.int8]:
    return (ubinary(vectors).astype(np.int16) - 128).astype(np.int8)


def _check_bits(vectors: Vectors) -> None:
    if vectors.shape[-1] % 8:
        raise InvalidRequest(
            f"binary encodings need a dimension that is a multiple of 8, got {vectors.shape[-1]}", "dimensions"
        )


def quantize(vectors: Vectors, ranges: npt.NDArray[np.float32], signed: bool) -> npt.NDArray[np.integer]:
    """Map each dimension's calibrated [min, max] onto 256 levels (floor, clipped), as sentence-transformers'
    `quantize_embeddings` does; int8 is the uint8 level minus 128."""
    low, high = ranges[0], ranges[1]
    steps = (high - low) / 255.0
    steps = np.where(steps == 0, 1.0, steps)
    levels = np.clip(np.floor((vectors - low) / steps), 0, 255)
    out: npt.NDArray[np.integer] = (levels - 128).astype(np.int8) if signed else levels.astype(np.uint8)
    return out


def quantization_ranges(manifest: Manifest, dimensions: int | None, normalized: bool) -> npt.NDArray[np.float32]:
    """Calibrated per-dimension [min, max] (shape [2, D]) for int8/uint8 outputs, from the manifest."""
    dims = dimensions or manifest.embedding_dim
    key = f"{dims}" if normalized else f"{dims}:raw"
    ranges = manifest.calibration.get("ranges", {})
    if key not in ranges:
        have = sorted({k.split(":")[0] for k in ranges}, key=int)
        raise InvalidRequest(
            f"int8/uint8 outputs need calibration ranges, which this artifact has for dimensions "
            f"{', '.join(have) or 'none'} only; request one of those or a float/binary encoding",
            "embedding_types",
        )
    return np.asarray(ranges[key], dtype=np.float32)


def check_encodings(
    encodings: Sequence[str], embed_dtype: str, endianness: str, *, dimension: int, token_level: bool
) -> None:
    """Refuse, before any work, an encoding request that cannot be met for vectors of `dimension`."""
    if not encodings:
        raise InvalidRequest(f"ask for at least one encoding: {', '.join(ENCODINGS)}", "encoding_format")
    unknown = [e for e in encodings if e not in ENCODINGS]
    if unknown:
        raise InvalidRequest(f"encodings must be among {', '.join(ENCODINGS)}, got {unknown[0]!r}", "encoding_format")
    if embed_dtype not in EMBED_DTYPES:
        raise InvalidRequest(
            f"embed_dtype must be one of {', '.join(EMBED_DTYPES)}, got {embed_dtype!r}", "embed_dtype"
        )
    if endianness not in ENDIANNESS:
        raise InvalidRequest(f"endianness must be one of {', '.join(ENDIANNESS)}, got {endianness!r}", "endianness")
    if token_level and any(e not in ("float", "base64") for e in encodings):
        raise InvalidRequest("token embeddings are returned as float or base64 only", "encoding_format")
    if any(e in ("binary", "ubinary") for e in encodings) and dimension % 8:
        raise InvalidRequest(
            f"binary encodings need a dimension that is a multiple of 8, got {dimension}", "dimensions"
        )


def encode_rows(
    vectors: Vectors,
    encoding: EncodingName,
    *,
    embed_dtype: str = "float32",
    endianness: str = "little",
    ranges: npt.NDArray[np.float32] | None = None,
) -> list[Any]:
    """Each row of [N, D] in one encoding (float rows stay NumPy arrays; the JSON layer writes them)."""
    if encoding == "float":
        return list(vectors)
    if encoding == "base64":
        return to_base64(vectors, embed_dtype, endianness)
    if encoding in ("binary", "ubinary"):
        return list(binary(vectors) if encoding == "binary" else ubinary(vectors))
    if ranges is None:
        raise InvalidRequest(f"{encoding} needs calibration ranges", "embedding_types")
    return list(quantize(vectors, ranges, signed=encoding == "int8"))


def binary_body(rows: Sequence[Vectors], embed_dtype: str, endianness: str) -> tuple[bytes, list[dict[str, Any]]]:
    """The reference's `bytes` encoding: every output's raw values back to back, and per output where its bytes
    lie (`start`, `end`), its `shape`, dtype and byte order."""
    parts: list[bytes] = []
    items: list[dict[str, Any]] = []
    offset = 0
    for index, row in enumerate(rows):
        array = np.asarray(row, dtype=np.float32)
        data = typed_bytes(array.reshape(1, -1), embed_dtype, endianness)[0]
        items.append(
            {
                "index": index,
                "embed_dtype": embed_dtype,
                "endianness": endianness,
                "start": offset,
                "end": offset + len(data),
                "shape": list(array.shape),
            }
        )
        parts.append(data)
        offset += len(data)
    return b"".join(parts), items
