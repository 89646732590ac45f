"""`trt-embed` command line: export, build-engine, inspect, embed, serve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trt_embed import __version__
from trt_embed.artifact import PRECISIONS
from trt_embed.engines.select import BACKEND_NAMES as BACKENDS
from trt_embed.errors import InvalidRequest, MissingDependency, TrtEmbedError
from trt_embed.poolers import POOLING_MODES

if TYPE_CHECKING:
    from trt_embed.exporter.plans import PlanOptions
    from trt_embed.runtime import RuntimeOptions

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
    "pyarrow": "bulk",
    "ray": "ray",
}


def _export(args: argparse.Namespace) -> int:
    from trt_embed.defaults import require_exporter

    require_exporter("trt-embed export")
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
        fused_attention=args.fused_attention,
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
    from trt_embed.exporter.plans import build_engine  # no torch: onnx, onnxruntime and TensorRT only

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
    g.add_argument("--max-batch", type=positive, default=64, help="largest batch of the default profiles")
    g.add_argument("--builder-opt-level", type=int, default=None, help="TensorRT builder optimization level 0..5")
    g.add_argument(
        "--tensorrt-flavour",
        choices=["tensorrt", "tensorrt-rtx"],
        default=None,
        help="plan builder (default: NVIDIA tensorrt if installed, else tensorrt-rtx)",
    )


def _inspect(args: argparse.Namespace) -> int:
    from trt_embed.describe import describe

    print(describe(Path(args.artifact), as_json=args.json, layers=args.layers))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from trt_embed.defaults import artifact_for
    from trt_embed.runtime import Runtime

    if args.input is not None:
        return _embed_file(args)
    if args.output is not None or args.ray is not None:
        raise SystemExit("embed --output/--ray work on a file: add --input PATH")
    artifact = artifact_for(args.model)  # a missing model fails before stdin is read
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with Runtime.load(artifact, backend=args.backend, precision=args.precision) as runtime:
        vectors = runtime.embed(texts, dimensions=args.dimensions)
    for text, vector in zip(texts, vectors, strict=True):
        print(json.dumps({"text": text, "embedding": [round(float(v), 7) for v in vector]}))
    return 0


def _embed_file(args: argparse.Namespace) -> int:
    """The bulk tool: `embed ARTIFACT --input PATH --output PATH` (the artifact may also come as --model)."""
    from trt_embed.runtime import EmbedRequest

    if args.output is None:
        raise SystemExit("embed --input needs --output PATH (.parquet or .npy)")
    if len(args.texts) > 1 or (args.texts and args.model):
        raise SystemExit("embed --input takes one artifact (positional or --model) and no texts")
    model = args.model or (args.texts[0] if args.texts else None)
    request = EmbedRequest(
        dimensions=args.dimensions,
        normalize=args.normalize,
        encodings=tuple(args.encoding or ["float"]),
        embed_dtype=args.embed_dtype,
        truncate=args.truncate,
        truncate_prompt_tokens=args.truncate_prompt_tokens,
        prompt_name=args.prompt_name,
        prompt=args.prompt,
        variant=args.variant,
    )
    from trt_embed.bulk import BulkJob, Source

    job = BulkJob(
        source=Source.of(args.input, args.format, args.text_field, args.id_field),
        output=Path(args.output),
        request=request,
        chunk_rows=args.chunk_rows,
        restart=args.restart,
        keep_parts=args.keep_parts,
    )
    if args.ray is not None:
        from trt_embed.integrations.ray import embed_file_on_ray

        embed_file_on_ray(
            model,
            job,
            address=args.ray,
            options=_runtime_options(args),
            actors=args.ray_actors,
            progress=not args.quiet,
        )
        return 0
    from trt_embed.bulk import embed_file
    from trt_embed.defaults import artifact_for
    from trt_embed.runtime import Runtime

    with Runtime.load(artifact_for(model), _runtime_options(args)) as runtime:
        embed_file(runtime, job, progress=not args.quiet)
    return 0


def _runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    from trt_embed.runtime import RuntimeOptions

    return RuntimeOptions(
        backend=args.backend,
        precision=args.precision,
        devices=args.devices,
        workers=args.workers,
        max_batch_tokens=args.max_batch_tokens,
    )


def devices(value: str) -> tuple[int, ...] | str:
    """`--devices 0,1` (GPU indices) or `all`."""
    if value == "all":
        return value
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"{value!r}: expected GPU indices like 0,1 or `all`")
    return tuple(int(p) for p in parts)


def _add_bulk_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bulk files (embed ARTIFACT --input PATH --output PATH)")
    g.add_argument("--input", default=None, metavar="PATH", help="JSONL, Parquet, CSV or text file to embed")
    g.add_argument("--output", default=None, metavar="PATH", help=".parquet (id + vector columns) or .npy (+ .ids.npy)")
    g.add_argument("--format", choices=["jsonl", "parquet", "csv", "text"], default=None, help="default: the suffix")
    g.add_argument("--text-field", default="text", help="column or JSON field holding the text")
    g.add_argument("--id-field", default=None, help="id column (default: `id` if present, else the row number)")
    g.add_argument("--chunk-rows", type=positive, default=4096, help="rows per output part (the unit of resume)")
    g.add_argument("--restart", action="store_true", help="discard the parts of an interrupted run instead of resuming")
    g.add_argument("--keep-parts", action="store_true", help="keep OUTPUT.parts/ after the merge")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    g.add_argument("--ray", default=None, metavar="ADDRESS", help="run as a Ray Data job on this cluster (or `auto`)")
    g.add_argument("--ray-actors", type=positive, default=None, help="runtime actors (default: one per GPU or CPU)")
    o = p.add_argument_group("output options")
    o.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None, help="L2-normalize")
    o.add_argument(
        "--encoding",
        action="append",
        choices=["float", "base64", "binary", "ubinary", "int8", "uint8"],
        default=None,
        help="output encoding; repeat for several columns (default: float)",
    )
    o.add_argument("--embed-dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="for base64")
    o.add_argument("--truncate", choices=["end", "start", "none"], default="end", help="over-long inputs")
    o.add_argument("--truncate-prompt-tokens", type=positive, default=None, help="keep at most this many tokens")
    o.add_argument("--prompt-name", default=None, help="a prompt the model defines (e.g. query)")
    o.add_argument("--prompt", default=None, help="text put before every input")
    o.add_argument("--variant", default=None, help="LoRA variant of the artifact")
    _add_device_options(p)


def _add_device_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices")
    g.add_argument(
        "--devices",
        type=devices,
        default=None,
        help="GPUs to run on, one engine each: 0,1 or all (default: GPU 0; CPU backends use their cores)",
    )
    g.add_argument("--workers", type=positive, default=None, help="engine calls at once per device (CPU: per core)")


def _serve(args: argparse.Namespace) -> int:
    if args.ray is not None:
        if args.processes > 1:
            raise InvalidRequest("--processes is for the local server; on Ray, use --replicas")
        return _serve_on_ray(args)
    if args.processes > 1:
        from trt_embed.server.processes import serve_processes

        return serve_processes(args, args.processes)
    from trt_embed.server.main import serve

    return serve(args)


def _serve_on_ray(args: argparse.Namespace) -> int:
    """`serve --ray ADDRESS`: the same app as a Ray Serve deployment of prebuilt artifacts."""
    from trt_embed.integrations.ray import serve_app, serve_on_ray
    from trt_embed.server.main import api_key
    from trt_embed.server.registry import Settings

    if not args.models:
        raise SystemExit("serve --ray needs artifact directories (prebuilt, on a path every node can read)")
    autoscaling = None
    if args.max_replicas is not None:
        autoscaling = {"min_replicas": args.min_replicas, "max_replicas": args.max_replicas}
        autoscaling["target_ongoing_requests"] = args.target_ongoing_requests
    settings = Settings(api_key=api_key(args), min_priority=args.min_priority, allowed_hosts=args.allowed_host)
    app = serve_app(
        list(args.models),
        names=args.served_model_name,
        options=_runtime_options(args),
        settings=settings,
        num_replicas=args.replicas,
        autoscaling_config=autoscaling,
        ray_actor_options={"num_cpus": args.cpus_per_replica, "num_gpus": args.gpus_per_replica},
    )
    serve_on_ray(app, address=args.ray, host=args.host, port=args.port)
    return 0


def _add_ray_serve_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray Serve (serve --ray ADDRESS; pip install 'trt-embed[ray]')")
    g.add_argument("--ray", default=None, metavar="ADDRESS", help="serve on this Ray cluster (auto, local, ray://...)")
    g.add_argument("--replicas", type=positive, default=1, help="replicas (each loads the artifacts)")
    g.add_argument("--min-replicas", type=int, default=1, help="autoscaling: fewest replicas")
    g.add_argument("--max-replicas", type=positive, default=None, help="autoscaling: most replicas (turns it on)")
    g.add_argument("--target-ongoing-requests", type=float, default=32.0, help="autoscaling: requests per replica")
    g.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs each replica reserves")
    g.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs each replica reserves")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one worth showing (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def port(value: str) -> int:
    number = int(value) if value.isdigit() else -1
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port; use 1..65535")
    return number


def positive(value: str) -> int:
    number = int(value) if value.isdigit() else -1
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number


def _add_serving_limits(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("security and limits")
    g.add_argument(
        "--api-key-file",
        default=None,
        metavar="PATH",
        help="read the API key from this file (keeps it out of the process list)",
    )
    g.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="HOST",
        help="accept only these Host headers (repeat; `*.example.com` wildcards; default: any)",
    )
    g.add_argument(
        "--min-priority",
        type=int,
        default=0,
        help="lowest `priority` a request may ask for (lower runs first); keeps clients from starving each other",
    )
    g.add_argument(
        "--max-input-chars", type=positive, default=None, help="longest text in characters (default: the runtime's)"
    )
    g.add_argument(
        "--image-dir",
        metavar="DIR",
        help="CLIP/SigLIP: clients may reference image files under DIR (file: URLs or relative paths); default none",
    )
    g.add_argument(
        "--image-domain",
        action="append",
        metavar="HOST",
        help="CLIP/SigLIP: fetch http(s) image URLs from HOST and its subdomains (repeatable); default none",
    )
    g.add_argument("--max-images", type=int, default=64, metavar="N", help="CLIP/SigLIP: most images in one request")
    g.add_argument(
        "--engine-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="an engine call running longer fails its requests and marks /health unhealthy until it returns",
    )
    g.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long accepted requests may take to finish before the server stops",
    )
    g.add_argument(
        "--shutdown-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, keep serving this long with /health answering 503, so load balancers stop sending first",
    )
    g.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request line and headers do not arrive within this time (408; 0: no limit)",
    )
    g.add_argument(
        "--limit-concurrency",
        type=positive,
        default=1000,
        metavar="N",
        help="open connections and requests in progress beyond which new requests are answered 503 (default: 1000)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trt-embed", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)

    p = add("export", "export a Hugging Face model into an artifact directory")
    p.add_argument("model", help="local model directory, or a hub id already in the local HF cache")
    p.add_argument("-o", "--output", required=True, help="artifact directory to create (replaced if it exists)")
    p.add_argument("-q", "--quiet", action="store_true", help="no stage progress on stderr")
    p.add_argument(
        "--max-seq-len",
        type=positive,
        default=None,
        help="longest input in tokens (default: sentence-transformers' max_seq_length, else the model's positions)",
    )
    p.add_argument(
        "--pooling",
        choices=list(POOLING_MODES),
        help="override the pooling of the model's 1_Pooling config (default: that config, else the zoo's)",
    )
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
    p.add_argument("--trust-remote-code", action="store_true", help="let transformers run the model's own code")
    p.add_argument("--revision", default=None, help="hub revision to look up in the local cache")
    p.add_argument("--no-fuse", action="store_true", help="skip the onnxruntime-fused variant")
    p.add_argument(
        "--fused-attention",
        action="store_true",
        help="decoders: also a fp16 graph with fused attention for onnxruntime-cuda (GroupQueryAttention, "
        "MultiHeadAttention); off by default until measured on a GPU",
    )
    p.add_argument("--calibration-file", default=None, help="texts (one per line) to check int8 accuracy on")
    p.add_argument("--matryoshka-dims", default=None, help="comma-separated Matryoshka dimensions the model supports")
    p.add_argument("--matryoshka", action="store_true", help="the model supports any Matryoshka dimension")
    p.add_argument(
        "--lora", action="append", default=[], metavar="NAME=ADAPTER_DIR", help="merge a PEFT adapter as variant NAME"
    )

    _add_tensorrt_options(p)
    p.set_defaults(func=_export)

    p = add("build-engine", "add TensorRT plans to an existing artifact (updates its manifest)")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no stage progress on stderr")
    p.add_argument("--precision", default="fp32,fp16", help="plan precisions: fp32, fp16 or both")
    _add_tensorrt_options(p)
    p.set_defaults(func=_build_engine)

    p = add("inspect", "print an artifact's manifest in readable form")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--json", action="store_true", help="print the raw manifest")
    p.add_argument("--layers", action="store_true", help="per-layer engine inspector view (needs the plan's GPU)")
    p.set_defaults(func=_inspect)

    p = add("embed", "embed texts (arguments or stdin lines) as JSON lines, or a file: ARTIFACT --input --output")
    p.add_argument("texts", nargs="*", help="texts to embed (default: one per line of stdin)")
    p.add_argument("-m", "--model", default=None, help="artifact or model directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS), help="engine backend")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="engine precision")
    p.add_argument("--dimensions", type=positive, default=None, help="Matryoshka dimensions to keep")
    p.add_argument("--max-batch-tokens", type=positive, default=None, help="token budget of one engine batch")
    _add_bulk_options(p)
    p.set_defaults(func=_embed)

    p = add("serve", "serve artifacts over HTTP (OpenAI, Cohere, pooling, score APIs)")
    p.add_argument(
        "models", nargs="*", help="artifacts, model directories or cached hub ids (default: all-MiniLM-L6-v2)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=port, default=8000, help="TCP port to listen on")
    p.add_argument(
        "--served-model-name",
        action="append",
        default=None,
        metavar="NAME",
        help="name clients put in `model`, once per model (default: the model it was exported from)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="require `Authorization: Bearer KEY` (default: $TRT_EMBED_API_KEY, else none)",
    )
    p.add_argument("--backend", default="auto", choices=list(BACKENDS), help="engine backend")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=list(PRECISIONS),
        help="fp32 (exact); bf16 (fp32 graph with bf16 matrix math on AMX CPUs, openvino-cpu); fp16 (GPU); int8",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=positive,
        default=None,
        help="token budget of one engine batch (default: the runtime's)",
    )
    p.add_argument(
        "--max-queue", type=positive, default=None, metavar="N", help="queued requests before 429 (default: 8192)"
    )
    p.add_argument(
        "--max-client-batch-size",
        type=positive,
        default=None,
        metavar="N",
        help="most inputs in one request (default: 2048)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU)")
    p.add_argument(
        "--processes",
        type=positive,
        default=1,
        metavar="N",
        help="server processes sharing the port, each with its own engines (GPU memory x N); for many clients, "
        "whose HTTP and JSON work one Python process cannot keep up with",
    )
    p.add_argument(
        "--auto-truncate",
        action="store_true",
        help="cut inputs over the model's limit instead of answering 400 (text-embeddings-inference's behaviour)",
    )
    p.add_argument(
        "--trust-request-chat-template",
        action="store_true",
        help="let requests bring their own `chat_template` (it runs here, sandboxed); refused by default",
    )
    p.add_argument(
        "--enable-chunked-processing",
        action="store_true",
        help="embed inputs over the model's limit in pieces, combined by a token-weighted mean (vLLM's pooler option)",
    )
    p.add_argument(
        "--max-embed-len",
        type=positive,
        default=None,
        metavar="N",
        help="with --enable-chunked-processing: the most tokens one input may have (default: no limit)",
    )
    _add_serving_limits(p)
    _add_device_options(p)
    _add_ray_serve_options(p)
    p.set_defaults(func=_serve)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported by the subcommand's parser, with that subcommand's usage."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


class Elapsed(logging.Formatter):
    """`[  12.3s] exporting the fp32 ONNX graph`: export stages with the time since the command started."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.time()

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        return f"[{record.created - self.started:6.1f}s] {level}{record.getMessage()}"


def configure_logging(args: argparse.Namespace) -> None:
    """Export stages (export, build-engine) go to stderr with elapsed time; third-party logs only from WARNING,
    and none of transformers' progress bars."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ours = logging.getLogger("trt_embed")
    quiet = getattr(args, "quiet", False)
    ours.setLevel(logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO)
    if args.command in ("export", "build-engine"):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers is imported
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(Elapsed())
        ours.handlers = [h for h in ours.handlers if not isinstance(h.formatter, Elapsed)] + [handler]
        ours.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    ours = logging.getLogger("trt_embed")
    saved = (list(ours.handlers), ours.propagate, ours.level)  # put back for callers that run main in-process
    configure_logging(args)
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
    except KeyboardInterrupt:  # Ctrl-C (an export in progress removes its partial directory on the way out)
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        ours.handlers, ours.propagate, ours.level = saved


if __name__ == "__main__":
    sys.exit(main())
