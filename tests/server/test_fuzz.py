"""Property-based: no JSON body, however wrong, gets a 5xx from any request schema (hypothesis, through the app),
and schemathesis finds nothing wrong with requests made from our own /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import LiveServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance
from starlette.testclient import TestClient

from trt_embed.runtime import Runtime
from trt_embed.server import cohere, openai, pooling, score, tokenize
from trt_embed.server.app import ENDPOINTS, create_app
from trt_embed.server.registry import Registry, Settings

SCHEMAS: dict[str, type[BaseModel]] = {
    "/v1/embeddings": openai.EmbeddingRequest,
    "/v2/embed": cohere.EmbedRequest,
    "/pooling": pooling.PoolingRequest,
    "/score": score.ScoreRequest,
    "/rerank": score.RerankRequest,
    "/tokenize": tokenize.TokenizeRequest,
}
VALID: dict[str, dict[str, Any]] = {  # one valid body per route, for the generator to start from
    "/v1/embeddings": {"input": "hello"},
    "/v2/embed": {"texts": ["hello"]},
    "/pooling": {"input": ["hello", "world"]},
    "/score": {"text_1": "a", "text_2": ["b", "c"]},
    "/rerank": {"query": "a", "documents": ["b"]},
    "/tokenize": {"prompt": "hello"},
}
# The reproductions from issue 14, always tried first: empty-token inputs and unsafe request ids.
ZERO_TOKENS = [{"input": text, "add_special_tokens": False} for text in ("", " ", "\u200b", "\ufeff")]
REPRODUCTIONS: dict[str, list[dict[str, Any]]] = {
    "/v1/embeddings": [
        *ZERO_TOKENS,
        {"input": ["", "x"], "add_special_tokens": False},
        *({"input": "x", "request_id": rid} for rid in ("\u4e2d", "a\nb", "\r\n", "\x00", "\x7f", "x" * 100_000)),
        {"input": [True, False]},
        {"input": "x", "priority": False},
        {"input": [2**64]},
    ],
    "/pooling": [*ZERO_TOKENS, {"input": "", "add_special_tokens": False, "task": "token_embed"}],
    "/v2/embed": [{"texts": [""], "max_tokens": 1}, {"texts": [" "], "truncate": "NONE"}],
    "/score": [{"text_1": "", "text_2": ""}, {"text_1": [], "text_2": []}],
    "/rerank": [{"query": "", "documents": [""]}, {"query": "a", "documents": [], "top_n": 2**64}],
    "/tokenize": [{"prompt": "", "add_special_tokens": False}, {"messages": [{"role": "user"}]}],
}
# Strings a tokenizer may turn into nothing, or that are hostile in headers, logs and JSON.
NASTY_TEXT = ["", " ", "\u200b", "\ufeff", "\u4e2d", "a\nb", "\r\n", "\x00", "\x7f", "\U0001f600", "x" * 600]
NUMBERS = [0, -1, 1, 2**31, 2**63, 2**64, -(2**64), 10**30, 1.5, -0.0, 1e308, True, False]


def _values(field_names: list[str]) -> st.SearchStrategy[Any]:
    """JSON values, biased toward what breaks servers: empty and odd strings, huge numbers, booleans, nesting."""
    text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=20))
    scalar = st.one_of(st.none(), st.booleans(), st.sampled_from(NUMBERS), st.integers(), st.floats(), text)
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(field_names), st.text(max_size=8)), inner, max_size=4),
        ),
        max_leaves=12,
    )


def _names(schema: type[BaseModel]) -> list[str]:
    names = set(schema.model_fields)
    for field in schema.model_fields.values():
        choices = getattr(field.validation_alias, "choices", None) or []
        names.update(c for c in choices if isinstance(c, str))
    return sorted(names)


def bodies(path: str) -> st.SearchStrategy[Any]:
    """Arbitrary JSON bodies: objects over the schema's own field names, the same laid over a valid body (so
    many get past validation to the engine), and sometimes any JSON at all."""
    names = _names(SCHEMAS[path])
    values = _values(names)
    objects = st.dictionaries(st.sampled_from(names), values, max_size=len(names))
    over_valid = objects.map(lambda changes: {**VALID[path], **changes})
    return st.one_of(objects, over_valid, over_valid, values)


@pytest.fixture(scope="module")
def client(prompt_artifact: Path) -> Iterator[TestClient]:
    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(prompt_artifact, max_queue=256), "tiny")
        return registry

    app = create_app(load, Settings(max_client_batch_size=16, max_body_bytes=64_000))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("path", sorted(SCHEMAS))
def test_no_body_gets_a_server_error(client: TestClient, path: str) -> None:
    statuses: set[int] = set()

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(body=bodies(path))
    def check(body: Any) -> None:
        response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        statuses.add(response.status_code)
        if response.status_code < 500:
            return
        raise AssertionError(f"{path} {body!r} -> {response.status_code} {response.text}")

    for body in REPRODUCTIONS[path]:
        check = example(body=body)(check)
    check()
    assert 200 in statuses and 400 in statuses, f"the generator must reach the engine and validation: {statuses}"


def test_valid_bodies_are_valid(client: TestClient) -> None:
    """The bodies the generator starts from answer 200 (else it would fuzz only the error paths)."""
    for path, body in VALID.items():
        assert client.post(path, json=body).status_code == 200, path


# -- schemathesis over our own /openapi.json ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi_server(prompt_artifact: Path) -> Iterator[LiveServer]:
    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(prompt_artifact, max_queue=256), "tiny")
        return registry

    with LiveServer(create_app(load, Settings(max_client_batch_size=16, max_body_bytes=64_000))) as server:
        yield server


# Every operation with valid requests; those with a body also with requests that break the schema (an operation
# without parameters has no invalid request to make).
OPERATIONS = [
    (e.path, e.method, mode)
    for e in sorted(ENDPOINTS, key=lambda e: e.path)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if e.schema is not None or mode == GenerationMode.POSITIVE
]


@pytest.mark.parametrize(
    ("path", "method", "mode"), OPERATIONS, ids=[f"{m} {p} {mode.value}" for p, m, mode in OPERATIONS]
)
def test_openapi_document_fuzzed_by_schemathesis(
    openapi_server: LiveServer, path: str, method: str, mode: GenerationMode
) -> None:
    """Requests generated from /openapi.json (valid ones, then ones that break the schema): no 5xx, statuses and
    content types as documented."""
    schema = schemathesis.openapi.from_url(f"{openapi_server.url}/openapi.json")
    operation = schema[path][method]
    checks = [not_a_server_error, status_code_conformance, content_type_conformance]

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(timeout=30)
        case.validate_response(response, checks=checks)

    check()
