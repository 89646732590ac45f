"""Golden data for LlamaNemotronVLModel (llama-nemotron-embed-vl-1b-v2) from its ORIGINAL code, tiny."""
import json, sys
from pathlib import Path
sys.path.insert(0, "/tmp/vlmgold/patched")
import numpy as np
import torch
from PIL import Image
import skimage.data
import transformers
import nemotron_vl.model as nm
from nemotron_vl.processor import LlamaNemotronVLImageProcessor

# GOLDEN PATCH 1: LlamaNemotronVLModel.__init__ loads its processor with AutoProcessor.from_pretrained(name_or_path)
# (a hub/local lookup the forward never uses); it gets None here.
nm.AutoProcessor = type("NoProcessor", (), {"from_pretrained": staticmethod(lambda *a, **k: None)})

torch.manual_seed(9090)
torch.set_num_threads(1)
OUT = Path(sys.argv[1])
IMG_CONTEXT, IMG_START, IMG_END = 1000, 1001, 1002
TILE, PATCH, MAX_TILES = 64, 8, 6
llm = dict(architectures=["LlamaBidirectionalModel"], model_type="llama_bidirec", vocab_size=1024, hidden_size=64,
           intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
           hidden_act="silu", rms_norm_eps=1e-5, rope_theta=500000.0,
           rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
           max_position_embeddings=131072, attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
           bos_token_id=1, eos_token_id=2, pad_token_id=0, pooling="avg", temperature=1.0)
vision = dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, image_size=TILE, patch_size=PATCH, num_channels=3, hidden_act="gelu_pytorch_tanh",
              layer_norm_eps=1e-6, vision_use_head=True)
config = nm.LlamaNemotronVLConfig(
    vision_config=vision, llm_config=llm, architectures=["LlamaNemotronVLModel"], downsample_ratio=0.5,
    force_image_size=TILE, select_layer=-1, template="bidirectional-llama-retriever", dynamic_image_size=True,
    use_thumbnail=True, min_dynamic_patch=1, max_dynamic_patch=MAX_TILES, max_input_tiles=MAX_TILES,
    img_context_token_id=IMG_CONTEXT, pooling="avg", ps_version="v2",
    auto_map={"AutoConfig": "configuration_llama_nemotron_vl.LlamaNemotronVLConfig",
              "AutoModel": "modeling_llama_nemotron_vl.LlamaNemotronVLModel"},
)
config._attn_implementation = "eager"
config.vision_config._attn_implementation = "eager"
config.llm_config._attn_implementation = "eager"
model = nm.LlamaNemotronVLModel(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, 0.1)
        elif "norm" in name.lower() and name.endswith("weight"):
            p.normal_(1.0, 0.1)
        else:
            p.normal_(0.0, 0.05)
print("num_image_token", model.num_image_token, "vision", type(model.vision_model).__name__,
      "attn", model.language_model.config._attn_implementation, model.vision_model.config._attn_implementation)
rng = np.random.default_rng(9090)

def small(a, size):
    return np.asarray(Image.fromarray(a).resize(size, Image.BICUBIC))
img_a = small(skimage.data.chelsea(), (150, 100))             # landscape 3:2
img_b = small(skimage.data.astronaut()[:, 96:352], (64, 128))  # portrait 1:2
img_c = small(skimage.data.coffee(), (48, 32))                # small (below one tile)
proc = LlamaNemotronVLImageProcessor(image_size=TILE, max_num_tiles=MAX_TILES, use_thumbnail=True,
                                     dynamic_image_size=True, norm_type="siglip")
feats = {}
for key, arr in (("a", img_a), ("b", img_b), ("c", img_c)):
    f = proc([Image.fromarray(arr)], return_tensors="pt")
    feats[key] = f["pixel_values"].float()
    print(key, tuple(f["pixel_values"].shape), f["num_patches"])

def text(n):
    return [int(x) for x in rng.integers(3, 990, n)]
def image_tokens(key):
    return [IMG_START] + [IMG_CONTEXT] * (model.num_image_token * feats[key].shape[0]) + [IMG_END]
QUERY, PASSAGE = text(2), text(2)  # the tiny vocabulary's "query:" / "passage:"
rows = {
    0: [[1] + QUERY + text(6)],
    1: [[1] + QUERY + text(10), [1] + PASSAGE + text(3), [1] + QUERY + text(21)],
    2: [[1] + PASSAGE + image_tokens("a") + text(7)],
    3: [[1] + PASSAGE + image_tokens("b") + text(2), [1] + QUERY + text(12), [1] + PASSAGE + image_tokens("c")],
    4: [[1] + PASSAGE + image_tokens("a")],
    5: [[1] + PASSAGE + image_tokens("c") + text(30), [1] + PASSAGE + image_tokens("a") + text(5)],
}
images = {0: [], 1: [], 2: ["a"], 3: ["b", None, "c"], 4: ["a"], 5: ["c", "a"]}
data = {f"img_{k}": v for k, v in (("a", img_a), ("b", img_b), ("c", img_c))}
for key in feats:
    data[f"img_{key}_pixel_values"] = feats[key].numpy()

def run(ids, mask, keys):
    pv = [feats[k] for k in keys if k]
    with torch.no_grad():
        out = model(pixel_values=torch.cat(pv) if pv else None, input_ids=torch.from_numpy(ids.copy()),
                    attention_mask=torch.from_numpy(mask), output_hidden_states=True, return_dict=True)
    return out.hidden_states[-1].numpy()

for i, seqs in rows.items():
    L = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), L), dtype=np.int64)
    mask = np.zeros((len(seqs), L), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1
    keys = images[i] or [None] * len(seqs)
    last = run(ids, mask, keys)
    m = mask[..., None].astype(np.float32)
    mean = (last * m).sum(1) / m.sum(1)
    lastpool = last[np.arange(len(seqs)), mask.sum(1) - 1]
    # the original pool(): same numbers through its own function
    ref = nm.pool(torch.from_numpy(last), torch.from_numpy(mask), "avg").numpy()
    assert np.abs(ref - mean).max() < 1e-6
    data[f"b{i}_input_ids"], data[f"b{i}_attention_mask"] = ids, mask
    data[f"b{i}_images"] = np.array([k or "" for k in keys])
    data[f"b{i}_last_hidden_state"] = last
    data[f"b{i}_pooled_mean"] = mean
    data[f"b{i}_pooled_last"] = lastpool
    data[f"b{i}_embedding"] = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
    for r, s in enumerate(seqs):
        alone = run(np.array([s]), np.ones((1, len(s)), dtype=np.int64), [keys[r]])
        print(f"b{i} row {r} len {len(s)} alone-vs-batch max|diff| {np.abs(alone[0] - last[r, :len(s)]).max():.2e}")
with torch.no_grad():
    data["img_a_image_embeddings"] = model.extract_feature(feats["a"]).numpy()
# left padding, as the original processor pads: positions are arange(S) in the original, so a left-padded row
# is NOT the row alone (recorded to document the behaviour; we follow unpadded positions, as vLLM does)
s0, s1 = rows[1][0], rows[1][1]
L = len(s0)
ids = np.zeros((2, L), dtype=np.int64); mask = np.zeros((2, L), dtype=np.int64)
ids[0], mask[0] = s0, 1
ids[1, L - len(s1):], mask[1, L - len(s1):] = s1, 1
left = run(ids, mask, [None, None])
print("left-padded short row vs alone max|diff|", np.abs(left[1, L - len(s1):] - data["b1_last_hidden_state"][1, :len(s1)]).max())

OUT.mkdir(parents=True, exist_ok=True)
from safetensors.torch import save_file
(OUT / "model").mkdir(parents=True, exist_ok=True)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, str(OUT / "model" / "model.safetensors"), metadata={"format": "pt"})
model.config.save_pretrained(OUT / "model")
np.savez_compressed(OUT / "golden.npz", **data)
# reload check through the original classes
re_cfg = nm.LlamaNemotronVLConfig.from_pretrained(OUT / "model")
re_cfg._attn_implementation = "eager"
re_model = nm.LlamaNemotronVLModel(re_cfg).eval()
res = re_model.load_state_dict(state, strict=True)
with torch.no_grad():
    o = re_model(pixel_values=torch.cat([feats["b"], feats["c"]]), input_ids=torch.from_numpy(data["b3_input_ids"]),
                 attention_mask=torch.from_numpy(data["b3_attention_mask"]), output_hidden_states=True).hidden_states[-1]
print("reload b3 max|diff|", float(np.abs(o.numpy() - data["b3_last_hidden_state"])[data["b3_attention_mask"].astype(bool)].max()))
print("transformers", transformers.__version__, "torch", torch.__version__)
