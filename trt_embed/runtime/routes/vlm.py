"""Vision-language models (Qwen2-VL, Qwen3-VL, LLaVA-NeXT, Phi-3-V, ...): every request (texts, images, both,
conversations) is prepared by the model's processor (`vlm.py`) and runs as one decoder call per batch, its images
through the vision graph first (`vlm/batch.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trt_embed.engines.base import Batch, Engine
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.outputs.assemble import input_ids
from trt_embed.runtime.routes.base import Job, Route, RouteContext, Staged, WholeJob
from trt_embed.runtime.types import BatchKey, EmbedRequest, Prepared, PreparedInput
from trt_embed.runtime.vlm.batch import VlmBatcher
from trt_embed.runtime.vlm.prepare import VlmPreparer


class VlmRoute(Route):
    name = "vlm"

    def __init__(self, context: RouteContext, vision: Engine) -> None:
        self.context = context
        self.vision = vision
        self.vlm = VlmPreparer(context.preparer, context.options)
        self.batcher = VlmBatcher(context.directory, context.manifest, self.vlm.processor)

    @classmethod
    def build(cls, context: RouteContext) -> VlmRoute | None:
        if context.manifest.vlm is None:
            return None
        assert context.image_engine is not None, "a vision-language artifact has a vision graph"
        return cls(context, context.image_engine)

    def serves(self, request: EmbedRequest) -> bool:
        return True  # a VLM answers every request this way

    def check(self, request: EmbedRequest) -> int:
        return self.vlm.check(request, self.context.limits.check_sizes)

    def start(self, request: EmbedRequest, variant: str) -> Job:
        return VlmJob(self, request, variant)

    def batch(self, engine: Engine, key: BatchKey, items: Sequence[PreparedInput]) -> Batch:
        vision = self.vision

        def run_vision(feeds: dict[str, Any], costs: list[int]) -> dict[str, Any]:
            return vision.infer(Batch("padded", feeds, costs), vision.output_names)

        return self.batcher.batch(items, run_vision)


class VlmJob(WholeJob):
    route: VlmRoute

    def prepare(self, chunk: None) -> Staged:
        request = self.request
        prompt = self.route.context.preparer.resolve_prompt(request.prompt_name, request.prompt)
        prepared = self.route.vlm.prepare(request, self.variant, prompt)
        return Staged([(prepared.key, prepared.items)], prepared.num_tokens, prepared)

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        super().take(staged, results)
        prepared: Prepared = staged.state
        self.ids.extend(input_ids(prepared))
