"""Requests with images (two-tower models: CLIP, SigLIP, SigLIP 2 NaFlex): what a request holds, its checks and
image preparation (the route that runs them: routes/two_tower.py).

An image becomes one prepared input of the image graph (`pixel_values` [3, H, W], or NaFlex's patches with their
mask and grid shape) that costs the vision tower's patch tokens (CLIP ViT-B/32 at 224: 50; SigLIP B/16 at 224:
196; NaFlex: the image's own patch count), so the scheduler budgets images against the same token budget as
texts. Texts and images of one request go to the scheduler as two groups (two batch keys) at once, so they run
concurrently, and their rows are put back in input order. Decoding and preprocessing run on the pipeline's
preparation threads, never on the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.images.preprocess import ImageRecipe, image_inputs
from trt_embed.runtime.images.sources import ImagePolicy, ImageURL, is_image, load
from trt_embed.runtime.options import RuntimeOptions
from trt_embed.runtime.types import BatchKey, EmbedRequest, Interleaved, Prepared, PreparedInput

IMAGE_PARTS = ("image_url", "image")


@functools.cache
def decode_pool() -> ThreadPoolExecutor:
    """Threads that decode and preprocess the images of a request side by side: Pillow's decoders and resampling
    and NumPy's arithmetic release the GIL, so one request's images use every core (one thread per core; on the
    16-core GPU host one thread held CLIP to ~210 images/s, the rate of its preprocessing alone)."""
    from trt_embed.engines.onnxruntime import default_threads

    return ThreadPoolExecutor(max_workers=default_threads(), thread_name_prefix="trt-embed-images")


def part_item(part: Any, where: str) -> str | ImageURL:
    """One content part -> a text or an image reference: {"type": "text", "text"} or {"type": "image_url",
    "image_url": {"url"} | "url"} (OpenAI's, Cohere's and vLLM's forms)."""
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where} must be an object with a `type`", where)
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return str(part["text"])
    if kind in IMAGE_PARTS:
        value = part.get(kind)
        url = value.get("url") if isinstance(value, dict) else value
        if isinstance(url, str) and url:
            return ImageURL(url)
        raise InvalidRequest(f'{where}: an image part needs `{kind}`: {{"url": "data:image/...;base64,..."}}', where)
    raise InvalidRequest(f"{where}: content type {kind!r} is not supported; use text or image_url", where)


def message_image(messages: Any) -> ImageURL | None:
    """The image of chat `messages` whose content has `image_url` parts (None: no image parts). CLIP and SigLIP
    embed one text or one image per input, so messages with an image must hold that image and nothing else."""
    if not isinstance(messages, Sequence):
        return None
    parts = [p for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list) for p in m["content"]]
    images = [p for p in parts if isinstance(p, dict) and p.get("type") in IMAGE_PARTS]
    if not images:
        return None
    texts = [p for p in parts if p not in images and str(p.get("text", "") if isinstance(p, dict) else p).strip()]
    texts += [m for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"].strip()]
    if texts or len(images) > 1:
        raise InvalidRequest(
            "messages with an image must hold that one image and no text: this model embeds one text or one image "
            "per input (send texts and images as separate requests or inputs)",
            "messages",
        )
    item = part_item(images[0], "messages")
    assert isinstance(item, ImageURL)
    return item


def has_images(request: EmbedRequest) -> bool:
    """Whether a request holds images (an input mixing text and images counts: it is refused with its reason)."""
    items = request.inputs or ()
    if request.images is not None or any(is_image(item) or isinstance(item, Interleaved) for item in items):
        return True
    return request.messages is not None and message_image(request.messages) is not None


def request_items(request: EmbedRequest) -> list[Any]:
    """The request's inputs in order: `images`, or `inputs` (texts, token lists and images mixed)."""
    if request.images is not None:
        if request.inputs is not None or request.messages is not None:
            raise InvalidRequest("give either `images` or `input`/`messages`, not both", "images")
        if isinstance(request.images, str | bytes) or not isinstance(request.images, Sequence):
            raise InvalidRequest("images must be a list of images", "images")
        return list(request.images)
    if request.messages is not None:
        if request.inputs is not None:
            raise InvalidRequest("give either `input` or `messages`, not both", "messages")
        return [message_image(request.messages)]
    return list(request.inputs or ())


class ImagePreparer:
    """Checks and prepares the images of requests for one two-tower artifact."""

    def __init__(self, manifest: Manifest, options: RuntimeOptions) -> None:
        vision = manifest.vision or {}
        self.recipe = ImageRecipe.from_dict(vision["preprocess"])
        self.cost = int(vision["image_tokens"])
        self.max_images = options.max_images
        self.policy = ImagePolicy.from_options(options)

    def check(self, request: EmbedRequest) -> list[Any]:
        """Checks that need no decoding: how many images, and nothing but images and texts in the list."""
        items = request_items(request)
        if not items:
            raise InvalidRequest("images are empty: pass at least one image", "images")
        images = sum(1 for item in items if is_image(item))
        if self.max_images is not None and images > self.max_images:
            raise InvalidRequest(
                f"{images} images in one request; this server takes at most {self.max_images}", "images"
            )
        if request.task != "embed":
            raise InvalidRequest("images can be embedded with the embed task only", "task")
        bad = next((n for n, item in enumerate(items) if not is_image(item) and not isinstance(item, str)), None)
        if bad is not None and isinstance(items[bad], Interleaved):
            raise InvalidRequest(
                f"input[{bad}] mixes texts and images: this model embeds one text or one image per input; send them "
                "as separate inputs",
                "input",
            )
        if bad is not None:
            raise InvalidRequest(f"input[{bad}] is a {type(items[bad]).__name__}: not a text or an image", "input")
        return items

    def prepare(self, images: Sequence[Any], variant: str, first_index: Sequence[int]) -> Prepared:
        """Decode, check and preprocess images (CPU work, on a preparation thread)."""
        key = BatchKey(variant=variant, output="sentence_embedding", skip=0, route="image")
        where = [f"input[{n}]" for n in first_index]
        # In input order; the first bad image (in order) is the error raised.
        prepare = self._prepared
        items = list(decode_pool().map(prepare, images, where) if len(images) > 1 else map(prepare, images, where))
        return Prepared(key=key, items=items)

    def _prepared(self, image: Any, where: str) -> PreparedInput:
        """One image's graph inputs and its cost: the vision tower's patch tokens (NaFlex: this image's own)."""
        loaded = load(image, self.policy, where)
        try:
            inputs = image_inputs(loaded, self.recipe)
        except Exception as exc:  # an image Pillow decoded but cannot resize is the client's image, not a crash
            raise InvalidRequest(f"{where} could not be preprocessed ({exc})", "input") from None
        mask = inputs.get("pixel_attention_mask")
        return PreparedInput(inputs, self.cost if mask is None else int(mask.sum()))
