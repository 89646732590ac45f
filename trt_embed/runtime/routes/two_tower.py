"""Requests with images for two-tower models (CLIP, SigLIP, SigLIP 2 NaFlex): texts through the text graph (the
text route's batches), images through the image graph (this route's), as two groups queued at once so they run
concurrently; rows put back in input order. A large request streams in chunks of `CHUNK` inputs, so memory stays
bounded however many images a caller sends."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, cast

from trt_embed.engines.base import Batch, Engine
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.images.preprocess import stack
from trt_embed.runtime.images.sources import is_image
from trt_embed.runtime.images.two_tower import ImagePreparer, has_images, request_items
from trt_embed.runtime.routes.base import Answer, Job, Route, RouteContext, Staged
from trt_embed.runtime.types import BatchKey, EmbedRequest, Prepared, PreparedInput, Row, Vectors

CHUNK = 64  # inputs of a large request prepared per step


class TwoTowerRoute(Route):
    name = "image"
    tower = "image"

    def __init__(self, context: RouteContext) -> None:
        self.context = context
        self.images = ImagePreparer(context.manifest, context.options)

    @classmethod
    def build(cls, context: RouteContext) -> TwoTowerRoute | None:
        return cls(context) if context.manifest.vision is not None else None

    def serves(self, request: EmbedRequest) -> bool:
        return has_images(request)

    def check(self, request: EmbedRequest) -> int:
        """Checked before any decoding (the texts of a mixed list against the size limit too)."""
        items = self.images.check(request)
        if request.images is None:
            self.context.limits.check_sizes([item for item in items if isinstance(item, str)])
        return len(items)

    def start(self, request: EmbedRequest, variant: str) -> Job:
        return TwoTowerJob(self, request, variant)

    def prepare(self, request: EmbedRequest, variant: str) -> tuple[list[int], list[Prepared]]:
        """Both groups of a request (texts, images), and for each input the group it went to (0 or 1)."""
        items = request_items(request)
        where = [1 if is_image(item) or request.images is not None else 0 for item in items]
        texts = [item for item, g in zip(items, where, strict=True) if g == 0]
        image_at = [n for n, g in enumerate(where) if g == 1]
        if texts:
            text_request = dataclasses.replace(request, inputs=texts, images=None, messages=None)
            text = self.context.preparer.prepare(text_request, variant)
        else:
            text = Prepared(key=BatchKey(variant, "sentence_embedding", 0), items=[])
        image = self.images.prepare([items[n] for n in image_at], variant, image_at)
        return where, [text, image]

    def batch(self, engine: Engine, key: BatchKey, items: Sequence[PreparedInput]) -> Batch:
        return Batch.images(stack([i.features for i in items]), [i.cost for i in items])


class TwoTowerJob(Job):
    def __init__(self, route: TwoTowerRoute, request: EmbedRequest, variant: str) -> None:
        self.route, self.request, self.variant = route, request, variant
        self.items = request_items(request)
        self.found: list[Row] = []

    def chunks(self) -> Iterable[list[Any]]:
        return [self.items[start : start + CHUNK] for start in range(0, len(self.items), CHUNK)]

    def prepare(self, chunk: list[Any]) -> Staged:
        request = self.request
        if request.images is not None:
            request = dataclasses.replace(request, images=chunk)
        elif request.messages is None:
            request = dataclasses.replace(request, inputs=chunk)
        where, groups = self.route.prepare(request, self.variant)
        return Staged([(g.key, g.items) for g in groups], groups[0].num_tokens, where)

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        cursors = [0, 0]
        for group in cast(list[int], staged.state):
            self.found.append(cast(Vectors, results[group].rows[cursors[group]]))
            cursors[group] += 1

    def answer(self) -> Answer:
        return self.found, [()] * len(self.found)
