"""What every exporter shares and nothing else: the export and plan options, the precision rules, the tool
versions recorded with each graph, and the default normalization. No torch: `build-engine` imports it."""

from __future__ import annotations

import dataclasses
from importlib import metadata

from trt_embed.errors import ExportError
from trt_embed.exporter.profiles import DEFAULT_MAX_BATCH
from trt_embed.manifest import ShapeProfile
from trt_embed.poolers import POOLING_MODES

PRECISIONS = ("auto", "fp32", "fp16", "int8")
ENGINES = ("onnx", "tensorrt", "all")
PLAN_PRECISIONS = ("fp32", "fp16")
EXACT_MIN_COSINE = 0.99999  # an fp32 graph must match its PyTorch module this closely, else export fails
TOOLS = ("trt-embed", "torch", "transformers", "onnx", "onnxruntime")


@dataclasses.dataclass
class PlanOptions:
    """TensorRT plan build options (`trt-embed build-engine`, `export --engine tensorrt`)."""

    precisions: tuple[str, ...] = PLAN_PRECISIONS
    targets: list[str] | None = None  # None: every compute capability the builder supports
    profiles: list[ShapeProfile] | None = None  # None: default_profiles(max sequence length, max_batch)
    max_batch: int = DEFAULT_MAX_BATCH
    optimization_level: int | None = None
    flavour: str | None = None
    variant: str = "base"


@dataclasses.dataclass
class ExportOptions:
    max_seq_len: int | None = None
    pooling: str | None = None
    normalize: bool | None = None
    precision: str = "auto"  # comma list; auto: fp32, plus fp16 and int8 when they are accurate enough
    engine: str = "onnx"  # onnx: ONNX graphs; tensorrt: the graphs plans need + plans; all: both
    plans: PlanOptions | None = None  # TensorRT build options; None: the defaults
    trust_remote_code: bool = False
    revision: str | None = None
    fuse: bool = True
    calibration_texts: list[str] | None = None
    matryoshka_dims: list[int] | None = None  # record Matryoshka support the config does not state ([] = any)
    lora: dict[str, str] = dataclasses.field(default_factory=dict)  # variant name -> PEFT adapter directory
    convert: str | None = None  # "embed": export a *ForCausalLM / *Model that is not in the zoo
    # decoders: also a fused-attention fp16 graph (GroupQueryAttention / MultiHeadAttention) for onnxruntime-cuda;
    # opt-in until it has been measured and tested on a GPU (tests/gpu, scripts/bench-gpu-decoders)
    fused_attention: bool = False
    architecture: str | None = None  # instead of config.json's (GritLM-7B says MistralForCausalLM; like vLLM's
    # `--hf-overrides '{"architectures": [...]}'`)

    def check(self) -> None:
        """Refuse option values no exporter accepts, before anything is read."""
        precisions(self.precision)
        if self.engine not in ENGINES:
            raise ExportError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise ExportError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {self.pooling!r}")


def precisions(spec: str) -> dict[str, bool]:
    """Requested precisions -> whether each is required (True) or kept only if accurate (False)."""
    names = [p.strip() for p in spec.split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names:
        raise ExportError(f"precision must be one or more of {', '.join(PRECISIONS)} (comma-separated), got {spec!r}")
    if "auto" in names:
        return {"fp32": True, "fp16": False, "int8": False}
    return {"fp32": True, **{p: True for p in names}}


def tool_versions(names: tuple[str, ...] = TOOLS) -> dict[str, str]:
    """The installed version of each named distribution (those not installed left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def normalized_by_default(opts: ExportOptions, pipeline_normalizes: bool | None) -> bool:
    """The export option, else the sentence-transformers pipeline's own choice (clip-ViT-B-32 has no Normalize
    module: its vectors are not normalized), else normalized (a plain HF checkpoint, compared by cosine)."""
    if opts.normalize is not None:
        return opts.normalize
    return True if pipeline_normalizes is None else pipeline_normalizes
