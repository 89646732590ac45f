"""Shape profiles (batch x sequence at min / opt / max) as data: defaults and the `--profiles SPEC` syntax.

SPEC is a comma-separated list of profiles; each profile is `MIN:OPT:MAX` where every shape is `BATCHxSEQ`,
or a single `BATCHxSEQ`, short for `1x1:BATCHxSEQ:BATCHxSEQ`. Example: two profiles, one for short inputs
and one for long ones::

    --profiles 1x1:32x64:64x128,1x1:8x512:32x512
"""

from __future__ import annotations

from trt_embed.errors import ExportError
from trt_embed.manifest import ShapeProfile

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_TOKENS = 8192  # the runtime's default token budget per batch
SHORT_SEQUENCE = 128


def default_profiles(
    max_seq_len: int, max_batch: int = DEFAULT_MAX_BATCH, max_tokens: int = DEFAULT_MAX_TOKENS
) -> list[ShapeProfile]:
    """A short-sequence profile (up to 128 tokens, full batch) and a long one (up to `max_seq_len`).

    Both start at 1x1, so every shape up to (max_batch, max_seq_len) fits one of them; the runtime takes
    the smaller profile when both fit. The long profile is tuned (`opt`) for the batch the token budget allows.
    """
    if max_batch < 1 or max_seq_len < 1:
        raise ExportError(f"max batch and max sequence length must be >= 1, got {max_batch} and {max_seq_len}")
    short = min(SHORT_SEQUENCE, max_seq_len)
    profiles = [ShapeProfile(min=(1, 1), opt=(max_batch, max(1, short // 2)), max=(max_batch, short))]
    if max_seq_len > short:
        long_batch = max(1, min(max_batch, max_tokens // max_seq_len))
        profiles.append(ShapeProfile(min=(1, 1), opt=(long_batch, max_seq_len), max=(max_batch, max_seq_len)))
    return profiles


def parse_profiles(spec: str, max_seq_len: int | None = None) -> list[ShapeProfile]:
    """Parse a SPEC (see the module docstring); checks min <= opt <= max and the model's length limit."""
    profiles = [_parse_profile(part.strip()) for part in spec.split(",") if part.strip()]
    if not profiles:
        raise ExportError(f"--profiles {spec!r} names no profile; {_SYNTAX}")
    for profile in profiles:
        if max_seq_len is not None and profile.max[1] > max_seq_len:
            raise ExportError(
                f"profile {format_profile(profile)} allows {profile.max[1]} tokens but the model takes at most "
                f"{max_seq_len}; lower the sequence length of its max shape"
            )
    return profiles


def format_profile(profile: ShapeProfile) -> str:
    return ":".join(f"{b}x{s}" for b, s in (profile.min, profile.opt, profile.max))


_SYNTAX = "expected MIN:OPT:MAX with shapes BATCHxSEQ (e.g. 1x1:32x64:64x128), or one BATCHxSEQ for 1x1:SHAPE:SHAPE"


def _parse_profile(text: str) -> ShapeProfile:
    parts = text.split(":")
    if len(parts) == 1:
        top = _parse_shape(parts[0], text)
        profile = ShapeProfile(min=(1, 1), opt=top, max=top)
    elif len(parts) == 3:
        low, opt, high = (_parse_shape(p, text) for p in parts)
        profile = ShapeProfile(min=low, opt=opt, max=high)
    else:
        raise ExportError(f"bad profile {text!r}: {_SYNTAX}")
    ordered = all(profile.min[i] <= profile.opt[i] <= profile.max[i] for i in (0, 1))
    if not ordered or min(profile.min) < 1:
        raise ExportError(f"bad profile {text!r}: shapes must be >= 1 and ordered min <= opt <= max per axis")
    return profile


def _parse_shape(text: str, profile: str) -> tuple[int, int]:
    batch, sep, seq = text.strip().lower().partition("x")
    if not sep or not batch.isdigit() or not seq.isdigit():
        raise ExportError(f"bad shape {text!r} in profile {profile!r}: {_SYNTAX}")
    return int(batch), int(seq)
