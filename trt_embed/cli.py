"""`trt-embed` command line: export, inspect, embed, serve."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from trt_embed.errors import TrtEmbedError


def _export(args: argparse.Namespace) -> int:
    from trt_embed.exporter import ExportOptions, export_model

    calibration = None
    if args.calibration_file:
        calibration = [line for line in Path(args.calibration_file).read_text().splitlines() if line.strip()]
    options = ExportOptions(
        max_seq_len=args.max_seq_len,
        pooling=args.pooling,
        normalize=False if args.no_normalize else None,
        precision=args.precision,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
        fuse=not args.no_fuse,
        calibration_texts=calibration,
        convert=args.convert,
        architecture=args.architecture,
    )
    manifest = export_model(args.model, args.output, options)
    print(f"exported {args.model} -> {args.output}")
    for engine in manifest.engines:
        print(f"  {engine.file:28s} {engine.precision:5s} cosine vs PyTorch min {engine.quality['cosine_min']:.6f}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from trt_embed.describe import describe

    print(describe(Path(args.artifact), as_json=args.json))
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
        choices=["auto", "fp32", "int8"],
        default="auto",
        help="auto: fp32 plus int8 if accurate enough; int8: fail if it is not; fp32: no int8",
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
    p.set_defaults(func=_export)

    p = sub.add_parser("inspect", help="print an artifact's manifest in readable form")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true", help="print the raw manifest")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("embed", help="embed texts (arguments or stdin lines), print JSON lines")
    p.add_argument("texts", nargs="*")
    p.add_argument("-m", "--model", default=None, help="artifact or model directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--dimensions", type=int, default=None)
    p.set_defaults(func=_embed)

    p = sub.add_parser("serve", help="serve artifacts over HTTP (OpenAI, Cohere, pooling, score APIs)")
    p.add_argument("models", nargs="*", help="artifact or model directories (default: all-MiniLM-L6-v2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", action="append", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--max-batch-tokens", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=None)
    p.add_argument("--max-client-batch-size", type=int, default=None)
    p.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trt_embed").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except TrtEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
