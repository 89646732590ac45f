"""Task-variant models (jina-embeddings-v3): Cohere `input_type` and OpenAI `model` pick the task's variant."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import API_KEY, LiveServer

from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

TEXTS = ["the cat read a paper", "how fast is a large dog"]


def test_input_type_and_model_select_the_task(tiny_artifact: Callable[[str], Path]) -> None:
    cohere = pytest.importorskip("cohere")
    openai = pytest.importorskip("openai")
    artifact = tiny_artifact("XLMRobertaLoRA")

    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(artifact), "jina")
        return registry

    with Runtime.load(artifact) as reference, LiveServer(create_app(load, Settings(api_key=API_KEY))) as live:
        prompts = reference.manifest.prompts
        assert {"retrieval.query", "retrieval.passage"} <= set(reference.variants)
        co = cohere.ClientV2(api_key=API_KEY, base_url=live.url)
        for input_type, task in (("search_query", "retrieval.query"), ("search_document", "retrieval.passage")):
            got = co.embed(model="jina", texts=TEXTS, input_type=input_type, embedding_types=["float"])
            prompt = task if task in prompts else None
            expected = reference.embed(TEXTS, model=task, prompt_name=prompt)
            np.testing.assert_allclose(got.embeddings.float_, expected, atol=1e-5)
            assert not np.allclose(expected, reference.embed(TEXTS, prompt_name=prompt), atol=1e-3)
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=API_KEY)
        response = client.embeddings.create(model="text-matching", input=TEXTS)
        np.testing.assert_allclose(
            [d.embedding for d in response.data], reference.embed(TEXTS, model="text-matching"), atol=1e-5
        )
