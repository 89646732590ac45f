"""Images in, for two-tower models (CLIP, SigLIP): image sources and their checks, preprocessing, requests
with images."""
