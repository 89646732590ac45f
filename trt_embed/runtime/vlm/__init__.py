"""Vision-language models in: each model family's image processing (one module per family, named as the
exporter's), the family table, request preparation and the decoder batch with its image features spliced in."""
