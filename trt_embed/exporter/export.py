"""`export_model`: HF model directory -> artifact. Picks the exporter for the zoo family, refuses what it cannot
do, builds the artifact aside and moves it into place when complete; every exporter's manifest is finished here
(TensorRT plans, then written). The exporters: interface.py."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from trt_embed.errors import ExportError
from trt_embed.exporter.cross_encoder import CROSS_ENCODER, cross_encoder_entry
from trt_embed.exporter.interface import ExportJob, ModelExporter, refuse_unsupported
from trt_embed.exporter.models.recipe import entry_for
from trt_embed.exporter.options import ExportOptions, PlanOptions, precisions
from trt_embed.exporter.plans import add_plans
from trt_embed.exporter.source import check_model_dir, read_sentence_transformers, resolve_model_dir
from trt_embed.exporter.text import TEXT
from trt_embed.exporter.two_tower import TWO_TOWER
from trt_embed.exporter.variants import check_adapter
from trt_embed.exporter.vlm import VLM
from trt_embed.manifest import Manifest
from trt_embed.zoo import architecture_of, load_zoo, zoo_entry

log = logging.getLogger("trt_embed.export")

# zoo `family` -> its exporter; every other family (encoder, nomic_bert, gte, jina_v3, decoder) is text
EXPORTERS: dict[str, ModelExporter] = {"two_tower": TWO_TOWER, "vlm": VLM, "cross_encoder": CROSS_ENCODER}

__all__ = ["EXPORTERS", "ExportOptions", "export_model"]


def export_model(model: str, output: str | Path, options: ExportOptions | None = None) -> Manifest:
    """Export `model` (a directory or a cached hub id) into the artifact directory `output`."""
    opts = options or ExportOptions()
    opts.check()
    for name, adapter_dir in opts.lora.items():
        check_adapter(name, Path(adapter_dir))
    final = Path(output).expanduser().resolve()
    job = _job(model, final.with_name(f".{final.name}.partial"), opts)  # built aside, moved when complete
    _check_output(final)
    exporter = EXPORTERS.get(job.entry.family, TEXT)
    refuse_unsupported(exporter, opts, job.entry.architecture)
    shutil.rmtree(job.out, ignore_errors=True)
    job.out.mkdir(parents=True)
    try:
        manifest = exporter.export(job)
        finish_artifact(job.out, manifest, opts)
    except BaseException:
        shutil.rmtree(job.out, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    job.out.rename(final)
    log.info("exported %s -> %s (%d engines)", model, final, len(manifest.engines))
    return manifest


def _job(model: str, out: Path, opts: ExportOptions) -> ExportJob:
    """What the checkpoint says: its sentence-transformers pipeline, config.json and zoo entry."""
    model_dir = resolve_model_dir(model, opts.revision)
    log.info("reading %s", model_dir)
    st = read_sentence_transformers(model_dir)
    config = check_model_dir(st.transformer_dir)
    architectures = [opts.architecture] if opts.architecture else config.get("architectures") or []
    if not architectures:
        raise ExportError(
            f"{st.transformer_dir}/config.json names no `architectures`; cannot pick an exporter. "
            "Name one with --architecture."
        )
    routed = architecture_of(config, [p.name for p in st.transformer_dir.iterdir()])
    use_routing = routed in load_zoo() and not opts.architecture
    if not use_routing and architectures[0].endswith("ForSequenceClassification") and opts.convert is None:
        entry = cross_encoder_entry(architectures[0])  # any sequence classifier: head in the graph
    else:
        entry = zoo_entry(routed) if use_routing else entry_for(architectures[0], opts.convert)
    config = {**{key: config[alias] for key, alias in entry.config_aliases.items() if alias in config}, **config}
    return ExportJob(out, model, model_dir, st, config, entry, opts)


def finish_artifact(out: Path, manifest: Manifest, opts: ExportOptions) -> None:
    """The TensorRT plans asked for (from the ONNX graphs the export kept), then the manifest, written."""
    if opts.engine != "onnx":
        plans = opts.plans or PlanOptions()
        have = {e.precision for e in manifest.engines if e.kind == "onnx"}
        chosen = tuple(p for p in plans.precisions if p in precisions(opts.precision) and p in have)
        log.info("building TensorRT plans: %s", ", ".join(chosen) or "none")
        add_plans(out, manifest, dataclasses.replace(plans, precisions=chosen))
    manifest.write(out)


def _check_output(out: Path) -> None:
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "trt_embed.json").is_file()):
        raise ExportError(
            f"{out} exists and is not a trt-embed artifact; choose an empty or new directory "
            "(an existing artifact there is replaced)"
        )
