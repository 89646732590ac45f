"""Where images come from, and the checks on them: Pillow images, NumPy arrays, bytes, local paths, `data:` URIs,
and (when the operator allows their domains) http(s) URLs.

What the Python caller passes (a `str` or `Path`, bytes, an array, a Pillow image) is trusted: a string is a
`data:` URI, an http(s) URL (checked against the allowed domains) or a local path. What an HTTP client sends comes
wrapped in `ImageURL` and is held to the operator's policy: `data:` URIs always, local files only under
`image_dir` (none by default), http(s) only for `image_domains` (none by default), with a timeout and a size cap.
Every image is refused with a clear `InvalidRequest` (400) when it is not an image, is truncated, has too many
pixels (a decompression bomb) or too many bytes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.images.preprocess import from_array, to_rgb
from trt_embed.runtime.options import RuntimeOptions


@dataclasses.dataclass(frozen=True)
class ImageURL:
    """An image reference sent by an HTTP client (`data:` URI, `file:`/path or http(s) URL): policy-checked."""

    url: str


@dataclasses.dataclass(frozen=True)
class ImagePolicy:
    image_dir: Path | None = None  # client file references must resolve under it; None: refused
    image_domains: tuple[str, ...] = ()  # http(s) hosts (and their subdomains) images may be fetched from
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000  # width x height; a larger image is refused before it is decoded
    timeout: float = 10.0

    @classmethod
    def from_options(cls, options: RuntimeOptions) -> ImagePolicy:
        """The operator's image settings (serve's --image-dir, --image-domain and limits)."""
        return cls(
            image_dir=Path(options.image_dir) if options.image_dir else None,
            image_domains=tuple(options.image_domains),
            max_bytes=options.max_image_bytes,
            max_pixels=options.max_image_pixels,
            timeout=options.image_timeout,
        )


def is_image(item: Any) -> bool:
    """Whether an input item is an image (anything but text and token-id lists)."""
    if isinstance(item, str | list):  # texts and token-id lists, the common case, decided first
        return False
    if isinstance(item, np.ndarray):  # a 1-D integer array is a token-id list
        return not (item.ndim == 1 and item.dtype.kind in "iu")
    if isinstance(item, ImageURL | bytes | bytearray | memoryview | Path):
        return True
    return type(item).__module__.startswith("PIL.")


def load(item: Any, policy: ImagePolicy, where: str) -> Any:
    """An input item as an RGB Pillow image, after every check; `where` names it in errors ("input[3]")."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return _checked(item, policy, where)
    if isinstance(item, np.ndarray):
        return _checked(from_array(item), policy, where)
    if isinstance(item, bytes | bytearray | memoryview):
        return decode(bytes(item), policy, where)
    if isinstance(item, Path):
        return decode(_read_file(item, policy, where), policy, where)
    if isinstance(item, ImageURL):
        return decode(_fetch(item.url, policy, where, trusted=False), policy, where)
    if isinstance(item, str):
        return decode(_fetch(item, policy, where, trusted=True), policy, where)
    raise InvalidRequest(f"{where} is a {type(item).__name__}, which is not an image", "input")


def decode(data: bytes, policy: ImagePolicy, where: str) -> Any:
    from PIL import Image

    if len(data) > policy.max_bytes:
        raise InvalidRequest(f"{where} has {len(data)} bytes; the limit is {policy.max_bytes}", "input")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidRequest(f"{where} is refused: {exc}", "input") from None
    except Exception:
        raise InvalidRequest(
            f"{where} is not an image Pillow can read (send PNG, JPEG, WebP, GIF, BMP or TIFF)", "input"
        ) from None
    return _checked(image, policy, where)


def _checked(image: Any, policy: ImagePolicy, where: str) -> Any:
    width, height = image.size
    if width * height > policy.max_pixels:
        raise InvalidRequest(
            f"{where} has {width}x{height} = {width * height} pixels; the limit is {policy.max_pixels}", "input"
        )
    if width < 1 or height < 1:
        raise InvalidRequest(f"{where} has no pixels ({width}x{height})", "input")
    try:
        image.load()
    except Exception as exc:
        raise InvalidRequest(
            f"{where} could not be decoded ({exc}): the file is truncated or damaged", "input"
        ) from None
    try:
        return to_rgb(image)
    except Exception:
        raise InvalidRequest(
            f"{where} has image mode {image.mode!r}, which cannot be converted to RGB; send an RGB, RGBA, "
            "grayscale, palette or CMYK image",
            "input",
        ) from None


def _read_file(path: Path, policy: ImagePolicy, where: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise InvalidRequest(f"{where} has {size} bytes; the limit is {policy.max_bytes}", "input")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"{where}: cannot read {path} ({exc.strerror or exc})", "input") from None


def _fetch(url: str, policy: ImagePolicy, where: str, *, trusted: bool) -> bytes:
    """The bytes behind a `data:` URI, a local path or an http(s) URL."""
    if url.startswith("data:"):
        return _data_uri(url, where)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https"):
        return _download(url, parsed.hostname or "", policy, where)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # "C:" is a drive, not a scheme
        raise InvalidRequest(
            f"{where}: unsupported image URL scheme {parsed.scheme!r}; use data:, file: or https:", "input"
        )
    path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else url)
    if not trusted:
        if policy.image_dir is None:
            raise InvalidRequest(
                f"{where}: local image files are not enabled on this server; send the image as a data: URI", "input"
            )
        root = policy.image_dir.resolve()
        full = (root / path).resolve()
        if not full.is_relative_to(root):
            raise InvalidRequest(f"{where}: image files must be under the server's image directory", "input")
        path = full
    return _read_file(path, policy, where)


def _data_uri(url: str, where: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise InvalidRequest(f"{where}: a data URI must look like data:image/png;base64,<data>", "input")
    media = header[5:].split(";")[0]
    if media and not media.startswith("image/"):
        raise InvalidRequest(f"{where}: the data URI says {media!r}, not an image/* type", "input")
    if not header.endswith(";base64"):
        return urllib.parse.unquote_to_bytes(payload)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: the data URI's base64 payload is invalid", "input") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect could leave the allowed domains
        return None


def _download(url: str, host: str, policy: ImagePolicy, where: str) -> bytes:
    allowed = any(host == d or host.endswith("." + d) for d in policy.image_domains)
    if not allowed:
        raise InvalidRequest(
            f"{where}: fetching images from {host or url!r} is not allowed on this server; send a data: URI"
            + (f" or use one of {', '.join(policy.image_domains)}" if policy.image_domains else ""),
            "input",
        )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=policy.timeout) as response:
            data: bytes = response.read(policy.max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InvalidRequest(f"{where}: could not fetch {url} ({exc})", "input") from None
    if len(data) > policy.max_bytes:
        raise InvalidRequest(f"{where}: {url} is larger than {policy.max_bytes} bytes", "input")
    return data
