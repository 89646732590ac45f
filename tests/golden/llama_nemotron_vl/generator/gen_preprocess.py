"""The ORIGINAL image processors on skimage photographs, real settings; compact records (counts, sums, samples)."""
import sys
from pathlib import Path
sys.path.insert(0, "/tmp/vlmgold/shims"); sys.path.insert(0, "/tmp/vlmgold/patched")
import attn_mask_shim  # noqa: F401
import numpy as np
import torch
from PIL import Image
import skimage.data
from phi3_v.image_processing_phi3_v import Phi3VImageProcessor
from nemotron_vl.processor import LlamaNemotronVLImageProcessor

OUT = Path(sys.argv[1])
PHOTOS = {
    "chelsea": lambda: skimage.data.chelsea(),
    "coffee": lambda: skimage.data.coffee(),
    "rocket": lambda: skimage.data.rocket(),
    "astronaut_strip": lambda: skimage.data.astronaut()[:, 200:330],  # tall and narrow
    "camera": lambda: skimage.data.camera(),                           # grayscale
    "hubble": lambda: skimage.data.hubble_deep_field()[:300, :900],     # wide
}

def record(prefix, pv, data):
    pv = pv.numpy().astype(np.float32)
    idx = np.random.default_rng(3).integers(0, pv.size, 8192)
    data[f"{prefix}_shape"] = np.array(pv.shape)
    data[f"{prefix}_index"] = idx
    data[f"{prefix}_sample"] = pv.reshape(-1)[idx]
    data[f"{prefix}_sum"] = pv.astype(np.float64).reshape(pv.shape[0], -1).sum(1) if pv.ndim == 4 else pv.astype(np.float64).reshape(pv.shape[0] * pv.shape[1], -1).sum(1)

for family in ("phi3_v", "nemotron_vl"):
    data = {"photos": np.array(list(PHOTOS))}
    for name, load in PHOTOS.items():
        image = Image.fromarray(load())
        if family == "phi3_v":
            for crops in (4, 16):
                f = Phi3VImageProcessor(num_crops=crops).preprocess([image], return_tensors="pt")
                key = f"{name}_c{crops}"
                data[f"{key}_image_size"] = np.array(f["image_sizes"][0])
                data[f"{key}_num_img_tokens"] = np.array(int(f["num_img_tokens"][0]))
                record(key, f["pixel_values"][0], data)
                print(family, key, tuple(f["pixel_values"].shape), f["image_sizes"], f["num_img_tokens"])
        else:
            f = LlamaNemotronVLImageProcessor(image_size=512, max_num_tiles=6, use_thumbnail=True,
                                              dynamic_image_size=True, norm_type="siglip")([image.convert("RGB")], return_tensors="pt")
            data[f"{name}_num_tiles"] = np.array(int(f["num_patches"][0]))
            record(name, f["pixel_values"], data)
            print(family, name, tuple(f["pixel_values"].shape))
    np.savez_compressed(OUT / family / "preprocess.npz", **data)
