"""Human-readable view of an artifact's manifest (`trt-embed inspect`)."""

from __future__ import annotations

from pathlib import Path

from trt_embed.manifest import EngineEntry, Manifest


def describe(directory: Path, *, as_json: bool = False, layers: bool = False) -> str:
    manifest = Manifest.read(directory)
    if as_json:
        return manifest.to_json()
    m = manifest
    if m.matryoshka_dimensions is None:
        matryoshka = "no"
    else:
        matryoshka = ", ".join(map(str, m.matryoshka_dimensions)) or f"any of 1..{m.embedding_dim}"
    if m.matryoshka_transform:
        matryoshka += f" ({m.matryoshka_transform} before slicing)"
    lines = [
        f"artifact      {directory}",
        f"source        {m.source.get('model')}" + (f" @ {m.source['revision']}" if m.source.get("revision") else ""),
        f"architecture  {m.architecture} (family {m.family})",
        f"embedding     {m.embedding_dim} dims (hidden {m.hidden_size}, {m.dense_layers} Dense layers)",
        f"pooling       {m.pooling.mode}" + ("" if m.pooling.include_prompt else " (prompt excluded)"),
        f"normalize     {'yes' if m.normalize else 'no'} (in runtime, after Matryoshka slicing)",
        f"matryoshka    {matryoshka}",
        f"outputs       {_outputs(m)}",
        f"max length    {m.max_seq_length} tokens",
        f"tokenizer     pad id {m.tokenizer.pad_token_id}, {m.tokenizer.padding_side} padding, "
        f"lower-case {'yes' if m.tokenizer.do_lower_case else 'no'}",
        f"prompts       {', '.join(f'{k}={v!r}' for k, v in m.prompts.items()) or 'none'}"
        + (f" (default {m.default_prompt_name})" if m.default_prompt_name else ""),
    ]
    if m.lora_adapters:
        lines.append(f"lora          {', '.join(m.lora_adapters)}")
    lines.append("engines")
    for e in m.engines:
        quality = e.quality
        checked = f"cos min {quality['cosine_min']:.6f}" if "cosine_min" in quality else ""
        profiles = "; ".join(f"{p.min}..{p.opt}..{p.max}" for p in e.profiles) or "dynamic"
        lines.append(
            f"  {e.file:30s} {e.kind:8s} {e.precision:5s} target {e.target:6s} variant {e.variant:8s} "
            f"{'fused ' if e.optimized else ''}shapes {profiles} {checked} sha256 {e.sha256[:12]}"
        )
        inputs = ", ".join(f"{t.name}:{t.dtype}" for t in e.inputs)
        outputs = ", ".join(f"{t.name}:{t.dtype}{t.shape}" for t in e.outputs)
        lines.append(f"      in  {inputs}\n      out {outputs}\n      built with {e.tools}")
        if e.kind == "tensorrt":
            lines.extend(_plan_lines(directory, e, layers))
    return "\n".join(lines)


def _plan_lines(directory: Path, e: EngineEntry, layers: bool) -> list[str]:
    """A TensorRT plan: how it was built and its layer summary (recorded from the network at build time)."""
    x = e.extra
    network = x.get("network", {})
    lines = [
        f"      {x.get('flavour')} {x.get('tensorrt_version')}, from {x.get('source')}, builder opt level "
        f"{x.get('builder_optimization_level') or 'default'}, {x.get('build_seconds')}s",
        f"      layers {network.get('layers')}: "
        + ", ".join(f"{k.lower()} {v}" for k, v in network.get("by_type", {}).items()),
        "      compute dtypes: "
        + "; ".join(
            f"{k.lower()} " + "/".join(f"{d} {n}" for d, n in v.items())
            for k, v in network.get("compute_dtypes", {}).items()
        ),
    ]
    if layers:
        from trt_embed.engines.tensorrt import engine_layers
        from trt_embed.errors import TrtEmbedError

        try:
            lines.append(engine_layers(directory / e.file, e))
        except TrtEmbedError as exc:
            lines.append(f"      engine inspector unavailable: {exc}")
    return lines


_KINDS = {
    "dense": "dense embedding and token states",
    "splade": "SPLADE sparse vector over the vocabulary (and token states)",
    "bge_m3": "bge-m3 dense (CLS), sparse token weights and ColBERT vectors, from one engine call",
    "multi_vector": "ColBERT-shaped token vectors (no dense embedding)",
}


def _outputs(m: Manifest) -> str:
    """What the model returns: its kind and the pooling tasks that read it."""
    from trt_embed.runtime.outputs.by_kind import tasks_of

    skip = f"; special tokens {m.special_token_ids} left out of sparse" if m.special_token_ids else ""
    table = m.head_config.get("query_weights")
    queries = f"; queries (prompt_name query) by the weight table {table}, no engine call" if table else ""
    return f"{_KINDS.get(m.kind, m.kind)}; tasks {', '.join(tasks_of(m.kind))}{skip}{queries}"
