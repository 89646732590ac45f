"""One route per kind of work; the pipeline picks the first route in `ROUTES` that serves a request.

The table is read in order: a route that must win over another comes before it (a query of inference-free
SPLADE before the token blocks; the text route, which serves everything, last). A route the artifact has no use
for (`build` returns None) is left out. To add a kind of work, write a `Route` subclass (see `base.Route`) and add
one line here.
"""

from __future__ import annotations

from trt_embed.runtime.routes.base import Job, Limits, Route, RouteContext, Staged
from trt_embed.runtime.routes.pairs import PairRoute
from trt_embed.runtime.routes.query_table import QueryTableRoute
from trt_embed.runtime.routes.text import TextRoute
from trt_embed.runtime.routes.token_blocks import TokenBlockRoute
from trt_embed.runtime.routes.two_tower import TwoTowerRoute
from trt_embed.runtime.routes.vlm import VlmRoute

ROUTES: tuple[type[Route], ...] = (
    PairRoute,  # cross-encoders and sequence classifiers: every request (pairs to score, texts to classify)
    QueryTableRoute,  # inference-free SPLADE queries: a weight table, no engine call
    VlmRoute,  # vision-language models: every request
    TwoTowerRoute,  # CLIP / SigLIP: requests with images
    TokenBlockRoute,  # dense embed of a list: token blocks
    TextRoute,  # everything else, one input at a time
)


def build_routes(context: RouteContext) -> list[Route]:
    """The routes of one artifact, in the order the pipeline tries them."""
    return [route for kind in ROUTES if (route := kind.build(context)) is not None]


__all__ = ["ROUTES", "Job", "Limits", "Route", "RouteContext", "Staged", "build_routes"]
