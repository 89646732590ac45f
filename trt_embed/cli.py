"""`trt-embed` command line: export, build-engine, inspect, embed, serve."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trt_embed.artifact import PRECISIONS
from trt_embed.engines.select import BACKEND_NAMES as BACKENDS
from trt_embed.errors import MissingDependency, TrtEmbedError

if TYPE_CHECKING:
    from trt_embed.exporter.plans import PlanOptions

# Top-level modules of optional dependencies -> the extra that installs them.
EXTRAS = {
    "torch": "export",
    "transformers": "export",
    "onnx": "export",
    "onnxscript": "export",
    "peft": "export",
    "safetensors": "export",
    "yaml": "export",
    "huggingface_hub": "export",
    "nncf": "export",
    "starlette": "server",
    "uvicorn": "server",
    "orjson": "server",
    "prometheus_client": "server",
    "pydantic": "server",
    "jinja2": "server",
    "openvino": "openvino",
    "tensorrt_rtx": "tensorrt-rtx",
}


def _export(args: argparse.Namespace) -> int:
    from trt_embed.exporter import ExportOptions, export_model

    calibration = None
    if args.calibration_file:
        calibration = [line for line in Path(args.calibration_file).read_text().splitlines() if line.strip()]
    options = ExportOptions(
        engine=args.engine,
        plans=_plan_options(args, precisions=("fp32", "fp16")),
        max_seq_len=args.max_seq_len,
        pooling=args.pooling,
        normalize=False if args.no_normalize else None,
        precision=args.precision,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
        fuse=not args.no_fuse,
        calibration_texts=calibration,
        matryoshka_dims=_matryoshka_dims(args),
        lora=dict(_lora_pair(spec) for spec in args.lora),
        convert=args.convert,
        architecture=args.architecture,
    )
    manifest = export_model(args.model, args.output, options)
    print(f"exported {args.model} -> {args.output}")
    for engine in manifest.engines:
        if engine.kind == "tensorrt":
            print(f"  {engine.file:28s} {engine.precision:5s} {engine.extra['flavour']} plan for {engine.target}")
        else:
            against = engine.extra.get("checked_against", "PyTorch")
            print(
                f"  {engine.file:28s} {engine.precision:5s} cosine vs {against} min {engine.quality['cosine_min']:.6f}"
            )
    return 0


def _matryoshka_dims(args: argparse.Namespace) -> list[int] | None:
    if args.matryoshka_dims:
        return [int(d) for d in args.matryoshka_dims.split(",") if d.strip()]
    return [] if args.matryoshka else None


def _lora_pair(spec: str) -> tuple[str, str]:
    name, sep, directory = spec.partition("=")
    if not sep or not name or not directory:
        raise SystemExit(f"--lora expects NAME=ADAPTER_DIR, got {spec!r}")
    return name, directory


def _plan_options(args: argparse.Namespace, precisions: tuple[str, ...]) -> PlanOptions:
    from trt_embed.exporter.plans import PlanOptions
    from trt_embed.exporter.profiles import parse_profiles

    return PlanOptions(
        precisions=precisions,
        targets=[t for t in args.target_sm.split(",") if t.strip()] if args.target_sm else None,
        profiles=parse_profiles(args.profiles) if args.profiles else None,
        max_batch=args.max_batch,
        optimization_level=args.builder_opt_level,
        flavour=args.tensorrt_flavour,
    )


def _build_engine(args: argparse.Namespace) -> int:
    from trt_embed.exporter.plans import build_engine

    directory = Path(args.artifact)
    wanted = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    for entry in build_engine(directory, _plan_options(args, precisions=wanted)):
        print(f"  {entry.file:36s} {entry.precision:5s} {entry.extra['flavour']} {entry.tools} for {entry.target}")
    return 0


def _add_tensorrt_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TensorRT plans")
    g.add_argument(
        "--target-sm",
        default=None,
        help="compute capabilities to build for, e.g. 80,86,89,120 (TensorRT-RTX; default: all it supports). "
        "NVIDIA TensorRT builds for the GPU it runs on.",
    )
    g.add_argument(
        "--profiles",
        default=None,
        metavar="SPEC",
        help="shape profiles: comma-separated MIN:OPT:MAX with shapes BATCHxSEQ, e.g. 1x1:32x64:64x128,1x1:8x512:32x512"
        " (a single BATCHxSEQ means 1x1:BATCHxSEQ:BATCHxSEQ). Default: a short (<=128 tokens) and a long profile",
    )
    g.add_argument("--max-batch", type=int, default=64, help="largest batch of the default profiles (default 64)")
    g.add_argument("--builder-opt-level", type=int, default=None, help="TensorRT builder optimization level 0..5")
    g.add_argument(
        "--tensorrt-flavour",
        choices=["tensorrt", "tensorrt-rtx"],
        default=None,
        help="default: NVIDIA tensorrt if installed, else tensorrt-rtx",
    )


def _inspect(args: argparse.Namespace) -> int:
    from trt_embed.describe import describe

    print(describe(Path(args.artifact), as_json=args.json, layers=args.layers))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from trt_embed.defaults import artifact_for
    from trt_embed.runtime import Runtime

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with Runtime.load(artifact_for(args.model), backend=args.backend, precision=args.precision) as runtime:
        vectors = runtime.embed(texts, dimensions=args.dimensions)
    for text, vector in zip(texts, vectors, strict=True):
        print(json.dumps({"text": text, "embedding": [round(float(v), 7) for v in vector]}))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from trt_embed.server.main import serve

    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trt-embed", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a Hugging Face model into an artifact directory")
    p.add_argument("model", help="local model directory, or a hub id already in the local HF cache")
    p.add_argument("-o", "--output", required=True, help="artifact directory to create (replaced if it exists)")
    p.add_argument("--max-seq-len", type=int, default=None)
    p.add_argument("--pooling", choices=["cls", "mean", "max", "last", "mean_sqrt_len", "weightedmean"])
    p.add_argument("--no-normalize", action="store_true", help="do not L2-normalize by default at run time")
    p.add_argument(
        "--precision",
        default="auto",
        help="comma list of fp32, fp16, int8, or auto: fp32 plus fp16 and int8 if accurate enough. Named "
        "precisions fail if inaccurate. TensorRT plans are built for the fp32/fp16 ones",
    )
    p.add_argument(
        "--engine",
        choices=["onnx", "tensorrt", "all"],
        default="onnx",
        help="onnx: ONNX graphs; tensorrt: the graphs plans need, plus TensorRT plans; all: every graph and plans",
    )
    p.add_argument(
        "--convert",
        choices=["embed"],
        default=None,
        help="embed: export a *ForCausalLM / *Model not in the zoo as an embedder (last-token pooling, normalized)",
    )
    p.add_argument(
        "--architecture",
        default=None,
        help="zoo architecture to export as, instead of config.json's (e.g. GritLM for GritLM-7B, "
        "VoyageQwen3BidirectionalEmbedModel for voyage-4-nano)",
    )
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--revision", default=None, help="hub revision to look up in the local cache")
    p.add_argument("--no-fuse", action="store_true", help="skip the onnxruntime-fused variant")
    p.add_argument("--calibration-file", default=None, help="texts (one per line) to check int8 accuracy on")
    p.add_argument("--matryoshka-dims", default=None, help="comma-separated Matryoshka dimensions the model supports")
    p.add_argument("--matryoshka", action="store_true", help="the model supports any Matryoshka dimension")
    p.add_argument(
        "--lora", action="append", default=[], metavar="NAME=ADAPTER_DIR", help="merge a PEFT adapter as variant NAME"
    )

    _add_tensorrt_options(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("build-engine", help="add TensorRT plans to an existing artifact (updates its manifest)")
    p.add_argument("artifact")
    p.add_argument("--precision", default="fp32,fp16", help="plan precisions: fp32, fp16 or both (default)")
    _add_tensorrt_options(p)
    p.set_defaults(func=_build_engine)

    p = sub.add_parser("inspect", help="print an artifact's manifest in readable form")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true", help="print the raw manifest")
    p.add_argument("--layers", action="store_true", help="per-layer engine inspector view (needs the plan's GPU)")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("embed", help="embed texts (arguments or stdin lines), print JSON lines")
    p.add_argument("texts", nargs="*")
    p.add_argument("-m", "--model", default=None, help="artifact or model directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    p.add_argument("--dimensions", type=int, default=None)
    p.set_defaults(func=_embed)

    p = sub.add_parser("serve", help="serve artifacts over HTTP (OpenAI, Cohere, pooling, score APIs)")
    p.add_argument("models", nargs="*", help="artifact or model directories (default: all-MiniLM-L6-v2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", action="append", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument(
        "--precision",
        default="fp32",
        choices=list(PRECISIONS),
        help="fp32 (exact, the default); bf16 (fp32 graph with bf16 matrix math on AMX CPUs, openvino-cpu); "
        "fp16 (GPU); int8",
    )
    p.add_argument("--max-batch-tokens", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=None)
    p.add_argument("--max-client-batch-size", type=int, default=None)
    p.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU)")
    p.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trt_embed").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRAS:
            raise
        print(f"error: {MissingDependency(root, EXTRAS[root])}", file=sys.stderr)
        return 2
    except TrtEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
