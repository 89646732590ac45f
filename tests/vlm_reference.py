"""The PyTorch references for vision-language embedders: transformers' own model forward on inputs made by
transformers' own image processor, pooled as the model's reference usage pools (the model cards' code), with the
prompts written here from the model cards (independently of the zoo's templates).

`reference(architecture, model_dir)` returns a callable (kind, text, image) -> normalized vector, kind one of
"text", "image", "mixed".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Reference = Callable[[str, str | None, Any], np.ndarray]

# DSE's model card (MrLight/dse-qwen2-2b-mrl-v1): a user turn [image, text], the generation prompt, then the EOS
DSE_TURN = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
)


def _normalized(vector: Any) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


# Qwen3-VL-Embedding's usage: the default instruction as the system turn, the user content, the generation prompt
QWEN3_VL_EMBEDDING_TURN = (
    "<|im_start|>system\nRepresent the user's input.<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def qwen3_vl(model_dir: Path) -> Reference:
    return qwen2_vl(model_dir, "Qwen3VLForConditionalGeneration")


def qwen2_vl(model_dir: Path, model_class: str = "Qwen2VLForConditionalGeneration") -> Reference:
    import torch
    import transformers
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    model = getattr(transformers, model_class).from_pretrained(str(model_dir)).eval()
    dse = model_class == "Qwen2VLForConditionalGeneration"
    config = json.loads((model_dir / "preprocessor_config.json").read_text())
    config.pop("image_processor_type", None)
    processor = transformers.Qwen2VLImageProcessorPil(**config)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    factor = processor.patch_size * processor.merge_size
    # the model card's query image: resized_height = resized_width = 1, i.e. the smallest image smart_resize makes
    side = smart_resize(1, 1, factor, processor.size["shortest_edge"], processor.size["longest_edge"])
    token = model.config.image_token_id

    def embed(kind: str, text: str | None, image: Any) -> np.ndarray:
        if not dse:  # Qwen3-VL-Embedding: no placeholder image for texts
            content = {"text": text, "image": IMAGE, "mixed": f"{IMAGE}{text}"}[kind]
            prompt = QWEN3_VL_EMBEDDING_TURN.format(content=content)
        elif kind == "text":
            prompt, image = DSE_TURN.format(text=f"Query: {text}"), Image.new("RGB", (side[1], side[0]))
        elif kind == "image":
            prompt = DSE_TURN.format(text="What is shown in this image?")
        else:
            prompt = DSE_TURN.format(text=text)
        vision: dict[str, Any] = {}
        if image is not None:
            pixels = processor(images=[image], return_tensors="pt")
            count = int(pixels["image_grid_thw"][0].prod()) // processor.merge_size**2  # the processor's expansion
            prompt = prompt.replace("<|image_pad|>", "<|image_pad|>" * count)
            vision = {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.model(
                input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=(ids == token).int(), **vision
            )
        return _normalized(out.last_hidden_state[0, -1])  # the last token (DSE: <|endoftext|>)

    return embed


# e5-v's model card (royokong/e5-v; vLLM's example writes the same): the prompt inside a llama3 user turn, the
# assistant header and " \n" after it; the tokenizer adds BOS. The card has no text-with-image prompt: ours puts
# the image on its own line before the text, as LLaVA does.
E5V_TURN = (
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
)
E5V_PROMPTS = {
    "text": "{text}\nSummary above sentence in one word: ",
    "image": "<image>\nSummary above image in one word: ",
    "mixed": "<image>\n{text}",
}


def e5_v(model_dir: Path) -> Reference:
    """The model card's code: LlavaNextProcessor on the prompt and image, the model's forward with
    output_hidden_states, the last position of the last hidden state, normalized."""
    import torch
    import transformers

    model = transformers.LlavaNextForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    config = json.loads((model_dir / "preprocessor_config.json").read_text())
    config.pop("image_processor_type", None)
    processor = transformers.LlavaNextProcessor(
        image_processor=transformers.LlavaNextImageProcessorPil(**config),
        tokenizer=transformers.PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json")),
        patch_size=model.config.vision_config.patch_size,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS
    )

    def embed(kind: str, text: str | None, image: Any) -> np.ndarray:
        prompt = E5V_TURN.format(E5V_PROMPTS[kind].format(text=text))
        inputs = processor(text=[prompt], images=None if image is None else [image], return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True, return_dict=True)
        return _normalized(out.hidden_states[-1][0, -1])

    return embed


REFERENCES: dict[str, Callable[[Path], Reference]] = {
    "Qwen2VLForConditionalGeneration": qwen2_vl,
    "Qwen3VLForConditionalGeneration": qwen3_vl,
    "LlavaNextForConditionalGeneration": e5_v,
}


def reference(architecture: str, model_dir: Path) -> Reference:
    return REFERENCES[architecture](model_dir)
