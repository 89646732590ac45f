"""Golden data for Phi3VForCausalLM (VLM2Vec) from the ORIGINAL code (TIGER-AI-Lab/VLM2Vec phi3_v), tiny."""
import json, sys, hashlib
from pathlib import Path
sys.path.insert(0, "/tmp/vlmgold/shims"); sys.path.insert(0, "/tmp/vlmgold/patched")
import attn_mask_shim  # noqa: F401  (transformers.modeling_attn_mask_utils, removed in 5.x)
import numpy as np
import torch
from PIL import Image
import skimage.data
import transformers
from phi3_v.configuration_phi3_v import Phi3VConfig
from phi3_v.modeling_phi3_v import Phi3VForCausalLM
from phi3_v.image_processing_phi3_v import Phi3VImageProcessor

torch.manual_seed(7070)
torch.set_num_threads(1)
OUT = Path(sys.argv[1])
NUM_CROPS = 4
head_dim = 16
rng = np.random.default_rng(7070)
short = [round(float(x), 4) for x in 1.0 + rng.uniform(0, 0.5, head_dim // 2)]
long = [round(float(x), 4) for x in 1.0 + rng.uniform(1, 8, head_dim // 2)]
config = Phi3VConfig(
    vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, max_position_embeddings=131072, original_max_position_embeddings=4096,
    rope_theta=10000.0, rope_scaling={"type": "su", "short_factor": short, "long_factor": long},
    sliding_window=131072, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    embd_layer={"embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
                "use_hd_transform": True, "with_learnable_separator": True},
    img_processor={"image_dim_out": 64, "model_name": "openai/clip-vit-large-patch14-336",
                   "name": "clip_vision_model", "num_img_tokens": 144},
    architectures=["Phi3VForCausalLM"], attn_implementation="eager",
)
config._attn_implementation = "eager"
model = Phi3VForCausalLM(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, 0.1)
        elif "norm" in name.lower() and name.endswith("weight"):
            p.normal_(1.0, 0.1)
        else:
            p.normal_(0.0, 0.05)
model.config._attn_implementation = "eager"
print("rotary", type(model.model.layers[0].self_attn.rotary_emb).__name__, model.config.rope_scaling["type"])
# GOLDEN PATCH 3 (instance attribute, not the file): transformers 5's save_pretrained expects a dict here
model._tied_weights_keys = {}

# --- images: skimage photographs, downscaled (kept small in the npz), one landscape and one portrait
def small(a, size):
    return np.asarray(Image.fromarray(a).resize(size, Image.BICUBIC))
img_a = small(skimage.data.chelsea(), (150, 100))              # landscape 3:2 -> 2x2 crops at num_crops 4
img_b = small(skimage.data.astronaut()[:, 96:352], (64, 128))   # portrait 1:2 -> 2x1 crops
proc = Phi3VImageProcessor(num_crops=NUM_CROPS)
feats = {}
for key, arr in (("a", img_a), ("b", img_b)):
    f = proc.preprocess([Image.fromarray(arr)], return_tensors="pt")
    feats[key] = f
    print(key, f["pixel_values"].shape, f["image_sizes"], f["num_img_tokens"])

# --- token ids: VLM2Vec/processor layout: each text chunk tokenized with BOS, image placeholder run of -image_id
def text(n):
    return [int(x) for x in rng.integers(3, 1024, n)]
def seq_image(key, n_after, n_before=0):
    before = [1] + text(n_before) if n_before else [1]
    return before + [-1] * int(feats[key]["num_img_tokens"][0]) + [1] + text(n_after)
rows = {
    0: [[1] + text(8)],                                          # text only
    1: [[1] + text(12), [1] + text(5), [1] + text(20)],          # texts, right padded
    2: [seq_image("a", 9)],                                      # image + instruction
    3: [seq_image("b", 6), [1] + text(15), seq_image("a", 3, n_before=4)],  # mixed sizes, text row between
    4: [seq_image("a", 0)],                                      # image only (BOS after the image, nothing else)
    5: [[1] + text(4100), [1] + text(19)],                       # longer than 4096: LongRoPE long factors (whole batch)
}
images = {0: [], 1: [], 2: ["a"], 3: ["b", None, "a"], 4: ["a"], 5: []}
data = {"img_a": img_a, "img_b": img_b, "num_crops": np.array(NUM_CROPS)}
for key in ("a", "b"):
    pv = feats[key]["pixel_values"][0].numpy()  # [num_crops + 1, 3, 336, 336]
    data[f"img_{key}_image_size"] = np.array(feats[key]["image_sizes"][0], dtype=np.int64)
    data[f"img_{key}_num_img_tokens"] = np.array(int(feats[key]["num_img_tokens"][0]))
    sample = np.random.default_rng(1).integers(0, pv.size, 8192)
    data[f"img_{key}_pixel_index"] = sample
    data[f"img_{key}_pixel_sample"] = pv.reshape(-1)[sample]
    data[f"img_{key}_pixel_sum"] = pv.astype(np.float64).sum(axis=(1, 2, 3))
    data[f"img_{key}_pixel_sumsq"] = (pv.astype(np.float64) ** 2).sum(axis=(1, 2, 3))
for i, seqs in rows.items():
    L = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), L), dtype=np.int64)
    mask = np.zeros((len(seqs), L), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1
    keys = images[i]
    kw = {}
    if keys:
        kw["pixel_values"] = [feats[k]["pixel_values"] if k else None for k in keys]
        kw["image_sizes"] = [torch.tensor(feats[k]["image_sizes"]) if k else None for k in keys]
    else:
        kw["image_sizes"] = [None] * len(seqs)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids.copy()), attention_mask=torch.from_numpy(mask), use_cache=False,
                    output_hidden_states=True, return_dict=True, **kw)
    last = out.hidden_states[-1].numpy()
    lengths = mask.sum(1)
    pooled = last[np.arange(len(seqs)), lengths - 1]
    data[f"b{i}_input_ids"] = ids
    data[f"b{i}_attention_mask"] = mask
    data[f"b{i}_images"] = np.array([k or "" for k in keys] if keys else [""] * len(seqs))
    if i == 5:  # keep the file small: the short row whole, the long row's first 24 and last 8 positions
        data["b5_last_hidden_state_short"] = last[1, :20]
        data["b5_last_hidden_state_long_head"] = last[0, :24]
        data["b5_last_hidden_state_long_tail"] = last[0, 4101 - 8 : 4101]
    else:
        data[f"b{i}_last_hidden_state"] = last
    data[f"b{i}_pooled_last"] = pooled
    data[f"b{i}_embedding"] = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    # each row alone, unpadded: the padded batch must agree (checked here, reported in the README)
    for r, s in enumerate(rows[i]):
        k = keys[r] if keys else None
        kw1 = {"image_sizes": [torch.tensor(feats[k]["image_sizes"]) if k else None]}
        if k:
            kw1["pixel_values"] = [feats[k]["pixel_values"]]
        with torch.no_grad():
            o1 = model(input_ids=torch.tensor([s]), attention_mask=torch.ones(1, len(s), dtype=torch.long),
                       use_cache=False, output_hidden_states=True, return_dict=True, **kw1).hidden_states[-1][0].numpy()
        if i == 5:
            print(f"b5 row {r} len {len(s)} alone-vs-batch (pooled) max|diff| {np.abs(o1[-1] - pooled[r]).max():.2e}")
            continue
        print(f"b{i} row {r} len {len(s)} alone-vs-batch max|diff| {np.abs(o1 - last[r, :len(s)]).max():.2e}")
# per-crop intermediates for image a: vision features (CLIP layer -2, patches) and projected image embeddings
emb = model.model.vision_embed_tokens
with torch.no_grad():
    pv = feats["a"]["pixel_values"]
    f = emb.get_img_features(pv.flatten(0, 1)).reshape(1, NUM_CROPS + 1, -1, emb.image_dim_out)
    proj = emb.hd_feature_transform(f, torch.tensor(feats["a"]["image_sizes"]))
# (per-crop CLIP features left out to keep the file small)
data["img_a_image_embeddings"] = proj.numpy()
OUT.mkdir(parents=True, exist_ok=True)
# Saved as the hub checkpoints are (transformers 4.x): one copy of the word embeddings that
# vision_embed_tokens.wte shares, config.json with the original `rope_scaling` key (5.x would write rope_parameters)
from safetensors.torch import save_file
(OUT / "model").mkdir(parents=True, exist_ok=True)
state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "model.vision_embed_tokens.wte.weight"}
# CLIP's weights under the names the hub checkpoints have (transformers 4.x CLIPVisionModel nests `vision_model.`;
# 5.x flattened it)
def hub_name(k):
    return k.replace("img_processor.", "img_processor.vision_model.", 1)
save_file({hub_name(k): v for k, v in state.items()}, str(OUT / "model" / "model.safetensors"), metadata={"format": "pt"})
cfg = config.to_dict()
rp = cfg.pop("rope_parameters")
cfg["rope_theta"] = rp["rope_theta"]
cfg["rope_scaling"] = {"type": "su", "short_factor": rp["short_factor"], "long_factor": rp["long_factor"]}
for k in ("_attn_implementation_autoset", "attn_implementation", "dtype", "torch_dtype", "use_cache", "transformers_version"):
    cfg.pop(k, None)
cfg["torch_dtype"] = "float32"
(OUT / "model" / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
# reload check: the saved files give the same outputs through the original classes
re_cfg = Phi3VConfig(**{k: v for k, v in json.loads((OUT / "model" / "config.json").read_text()).items()})
re_cfg._attn_implementation = "eager"
re_model = Phi3VForCausalLM(re_cfg).eval()
missing = re_model.load_state_dict(state, strict=False)
print("reload missing", missing.missing_keys, "unexpected", missing.unexpected_keys)
with torch.no_grad():
    ids = torch.from_numpy(data["b3_input_ids"].copy()); m = torch.from_numpy(data["b3_attention_mask"])
    kw = {"pixel_values": [feats["b"]["pixel_values"], None, feats["a"]["pixel_values"]],
          "image_sizes": [torch.tensor(feats["b"]["image_sizes"]), None, torch.tensor(feats["a"]["image_sizes"])]}
    o = re_model(input_ids=ids, attention_mask=m, use_cache=False, output_hidden_states=True, return_dict=True, **kw)
print("reload b3 max|diff|", float(np.abs(o.hidden_states[-1].numpy() - data["b3_last_hidden_state"])[data["b3_attention_mask"].astype(bool)].max()))
np.savez_compressed(OUT / "golden.npz", **data)
print("transformers", transformers.__version__, "torch", torch.__version__)
