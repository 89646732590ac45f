"""One error hierarchy for the whole package; only `server/` maps these to HTTP statuses."""

from __future__ import annotations

import copy
import re


class TrtEmbedError(Exception):
    """Base of every error trt-embed raises on purpose."""


class InvalidRequest(TrtEmbedError, ValueError):
    """The caller asked for something invalid; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def renumbered(self, positions: list[int]) -> InvalidRequest:
        """This error raised on a part of a request, with its `input[k]` references turned back into the
        request's own positions (`positions[k]`)."""
        message = re.sub(r"input\[(\d+)\]", lambda m: f"input[{positions[int(m.group(1))]}]", str(self))
        again = copy.copy(self)
        again.args = (message,)
        return again


class InputTooLong(InvalidRequest):
    """An input exceeds the model's maximum length and truncation is off."""


class TooLarge(InvalidRequest):
    """A request that can never be served as sent (too many inputs, too long an input, too large a response)."""


class UnknownModel(TrtEmbedError, LookupError):
    """A model or variant name that is not served."""


class Overloaded(TrtEmbedError):
    """The queue is full; the request was refused before any work was done and may succeed later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineError(TrtEmbedError):
    """The inference engine failed while running a batch."""


class ArtifactError(TrtEmbedError):
    """An artifact directory is missing, corrupt or does not match its manifest."""


class ExportError(TrtEmbedError):
    """A model cannot be exported; the message says why and what to do."""


class UnsupportedArchitecture(ExportError):
    """The model's architecture has no entry in model_zoo.yaml."""


class MissingDependency(TrtEmbedError, ImportError):
    """An optional dependency is not installed; the message has the pip command."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module!r} is required for this feature but is not installed. "
            f"Install it with: pip install 'trt-embed[{extra}]'"
        )
        self.module = module
        self.extra = extra


class BackendUnavailable(TrtEmbedError):
    """The requested engine backend cannot run on this machine."""


class ServerError(TrtEmbedError):
    """A server process of `serve --processes N` failed to start, or died while serving."""
