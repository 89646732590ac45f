"""Score requests as embed requests: both sides at once, or each side with its own token limit (rerank's
`max_tokens_per_query` / `max_tokens_per_doc`), and over-long inputs refused in the reference's words."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from trt_embed.errors import InputTooLong
from trt_embed.runtime.scoring import cosine, summed
from trt_embed.runtime.types import Dense, EmbedResult, ScoreResult


def pair_scores(first: EmbedResult, second: EmbedResult) -> ScoreResult:
    """Cosine of the two sides' vectors (1:N or N:N), their tokens and their time added up."""
    assert isinstance(first.output, Dense) and isinstance(second.output, Dense)
    scores = cosine(first.output.vectors, second.output.vectors)
    return ScoreResult(scores, first.num_tokens + second.num_tokens, summed([first.timing, second.timing]))


@contextlib.contextmanager
def score_errors() -> Iterator[None]:
    """An over-long input in a score request is refused in the reference's words for scoring."""
    try:
        yield
    except InputTooLong as exc:
        raise InputTooLong(str(exc).replace("for embedding generation.", "for score."), exc.param) from None
