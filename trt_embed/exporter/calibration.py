"""The built-in calibration texts and the inputs of every length class that int8/fp16 graphs are calibrated and
checked on: a graph is kept only if it holds on short queries as well as on long passages, as users send them."""

from __future__ import annotations

from importlib import resources

SHORT_QUERIES = 8  # one- to three-word queries cut from the texts


def default_calibration_texts() -> list[str]:
    text = resources.files("trt_embed.exporter").joinpath("calibration.txt").read_text()
    return [line for line in text.splitlines() if line.strip()]


def short_queries(texts: list[str]) -> list[str]:
    """One-, two- and three-word queries: the last words of texts spread over `texts`. Few tokens give few
    activations to average over, so quantization and fp16 errors show most on them (static int8 on decoders:
    min cosine 0.88 on short queries where sentences gave 0.997)."""
    step = max(1, len(texts) // SHORT_QUERIES)
    picked = texts[::step][:SHORT_QUERIES]
    queries = [" ".join(text.split()[-1 - i % 3 :]).strip(".,;:!?\"'") for i, text in enumerate(picked)]
    return [q for q in queries if q]


def long_passages(texts: list[str], size: int = 8) -> list[str]:
    """Passages of `size` texts joined (two of them): activation ranges grow with sequence length."""
    return [" ".join(texts[i : i + size]) for i in range(0, min(len(texts), 2 * size), size) if texts[i : i + size]]


def check_texts(texts: list[str]) -> list[str]:
    """What exported graphs are checked against their reference on: `texts`, short queries and long passages."""
    return [*texts, *short_queries(texts), *long_passages(texts)]
