"""Score requests as embed requests: both sides at once, or each side with its own token limit (rerank's
`max_tokens_per_query` / `max_tokens_per_doc`), and over-long inputs refused in the reference's words."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from trt_embed.errors import InputTooLong
from trt_embed.runtime.scoring import cosine
from trt_embed.runtime.types import Dense, EmbedRequest, EmbedResult, ScoreRequest, ScoreResult, Timing


def side_request(request: ScoreRequest, texts: list[str], max_tokens: int | None) -> EmbedRequest:
    """Texts of a score request as an embed request; `max_tokens` truncates them to that many tokens."""
    return EmbedRequest(
        inputs=texts,
        truncate=request.truncate if max_tokens is None else "end",
        truncate_prompt_tokens=request.truncate_prompt_tokens if max_tokens is None else max_tokens,
        prompt_name=request.prompt_name,
        prompt=request.prompt,
        priority=request.priority,
        variant=request.variant,
    )


def pair_scores(first: EmbedResult, second: EmbedResult) -> ScoreResult:
    """Cosine of the two sides' vectors (1:N or N:N), their tokens and their time added up."""
    assert isinstance(first.output, Dense) and isinstance(second.output, Dense)
    a, b = first.timing, second.timing
    timing = Timing(a.prepare + b.prepare, a.queue + b.queue, a.inference + b.inference, a.batches + b.batches)
    scores = cosine(first.output.vectors, second.output.vectors)
    return ScoreResult(scores, first.num_tokens + second.num_tokens, timing)


@contextlib.contextmanager
def score_errors() -> Iterator[None]:
    """An over-long input in a score request is refused in the reference's words for scoring."""
    try:
        yield
    except InputTooLong as exc:
        raise InputTooLong(str(exc).replace("for embedding generation.", "for score."), exc.param) from None
